"""What the understanding tasks share in a running studio: the backends they can be pointed at (the
remote OpenAI-compatible service from Settings, local VLM folders, OCR), the OCR engine and the text
streams of running jobs. One instance hangs off the app context (``ctx.understanding``).

Backend names, as requests and Settings spell them: ``default`` (the task's offline default),
``remote`` (Settings → ``vlm_api_base_url`` / ``vlm_api_model``; the key from the environment variable named
by ``vlm_api_key_env``, else ``<data dir>/vlm_api_key.txt``), ``local:<folder>`` (a folder of
``models/VLM/``) and ``ocr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from modules.understanding.backends.base import BackendError, BackendUnavailable, VisionBackend
from modules.understanding.backends.ocr import OCR_MODEL, OcrBackend, OcrEngine
from modules.understanding.chat_store import ChatStore
from modules.understanding.search.index import DB_NAME, EmbeddingIndex
from modules.understanding.streams import TextStreams

if TYPE_CHECKING:
    from modules.models.slots import ModelSlots
    from modules.settings import Settings
    from modules.understanding.backends.local_vlm import LocalVLMBackend
    from modules.understanding.backends.openai_compat import RemoteConfig

KEY_FILE = "vlm_api_key.txt"


class UnknownBackend(BackendError):
    """A backend name that is not one of default / remote / local:<folder> / ocr."""


class UnderstandingServices:
    def __init__(self, *, data_dir: Path, repo_root: Path, settings: Callable[[], "Settings"],
                 slots: "ModelSlots | None" = None, device: Callable[[], str] = lambda: "cpu") -> None:
        self._data_dir = Path(data_dir)
        self._settings = settings
        self._slots = slots
        self._device = device
        self.vlm_roots = tuple(dict.fromkeys([self._data_dir / "models" / "VLM", Path(repo_root) / "models" / "VLM"]))
        self.ocr = OcrEngine()
        self.streams = TextStreams()
        self.chats = ChatStore(self._data_dir)  # the Understand tab's chats (<data>/understanding/chats)
        # the gallery's embeddings (<data>/understanding/embeddings.db; modules/understanding/search)
        self.embeddings = EmbeddingIndex(self._data_dir / "understanding" / DB_NAME)

    # -- naming -------------------------------------------------------------------------------
    def local_models(self) -> list[str]:
        from modules.understanding.backends.local_vlm import list_vlm_folders

        return [f"local:{folder.name}" for folder in list_vlm_folders(self.vlm_roots)]

    def default_backend_name(self, task: str | None = None) -> str:
        """The backend of a request that names none: Settings → ``understanding_backend_<task>`` (caption, ask,
        extract, chat, check, batch) when set, else ``understanding_backend``."""
        settings = self._settings()
        own = getattr(settings, f"understanding_backend_{task}", "") if task else ""
        return own or settings.understanding_backend or "default"

    def check_name(self, name: str) -> str:
        """``name`` normalised, or UnknownBackend saying what exists."""
        name = (name or "").strip()
        if name in ("default", "remote", "ocr", OCR_MODEL):
            return "ocr" if name == OCR_MODEL else name
        if name.startswith("local:") and name[6:] and "/" not in name[6:] and "\\" not in name[6:] and name[6:] not in (".", ".."):
            if self._local_folder(name[6:]) is None:
                raise UnknownBackend(f"no model folder {name[6:]!r} in models/VLM (installed: "
                                     f"{', '.join(self.local_models()) or 'none'})")
            return name
        raise UnknownBackend(f"unknown backend {name!r}: use default, remote, ocr or local:<folder in models/VLM> "
                             f"(installed: {', '.join(self.local_models()) or 'none'})")

    def _local_folder(self, name: str) -> Path | None:
        from modules.understanding.backends.local_vlm import is_vlm_folder

        for root in self.vlm_roots:
            if is_vlm_folder(root / name):
                return root / name
        return None

    # -- opening --------------------------------------------------------------------------------
    def remote_config(self) -> "RemoteConfig":
        from modules.understanding.backends.openai_compat import RemoteConfig

        settings = self._settings()
        if not settings.vlm_api_base_url or not settings.vlm_api_model:
            raise BackendUnavailable("no OpenAI-compatible service is set: fill in Settings → vlm_api_base_url and "
                                     "vlm_api_model (for example https://openrouter.ai/api/v1 and "
                                     "baidu/ernie-4.5-vl-28b-a3b)")
        return RemoteConfig(base_url=settings.vlm_api_base_url, model=settings.vlm_api_model, api_key=self.api_key(),
                            timeout_s=float(settings.vlm_api_timeout_s))

    def api_key(self) -> str | None:
        env = self._settings().vlm_api_key_env
        if env and os.environ.get(env):
            return os.environ[env].strip()
        path = self._data_dir / KEY_FILE
        try:
            return path.read_text(encoding="utf-8").strip() or None
        except OSError:
            return None

    def open(self, name: str) -> VisionBackend:
        """The backend ``name`` (not ``default``, which each task resolves itself)."""
        name = self.check_name(name)
        if name == "remote":
            from modules.understanding.backends.openai_compat import OpenAICompatBackend

            return OpenAICompatBackend(self.remote_config())
        if name == "ocr":
            return OcrBackend(self.ocr)
        if name.startswith("local:"):
            return self.local(name[6:])
        raise UnknownBackend("the default backend is chosen by each task")

    def local(self, folder_name: str) -> "LocalVLMBackend":
        from modules.understanding.backends.local_vlm import LocalVLMBackend

        folder = self._local_folder(folder_name)
        if folder is None:
            raise BackendUnavailable(f"no model folder {folder_name!r} in models/VLM")
        return LocalVLMBackend(folder, device=self._device(), slots=self._slots)
