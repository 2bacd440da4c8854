"""Where Atelier keeps things on disk.

Code and shipped configs live in the repository; everything a user creates (settings, caches,
outputs, queued jobs) lives under the data dir (``--data-dir``, default: the repository root,
as in A1111). Models live under ``<data dir>/models`` unless ``--ckpt-dir``/``--lora-dir`` say
otherwise; the repository's own ``models/`` folder (which holds the embedded default model) is
always searched as well.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: output folder per job kind, relative to ``<data dir>/outputs`` (A1111 names)
OUTPUT_FOLDERS: dict[str, str] = {
    "txt2img": "txt2img-images",
    "txt2img-grids": "txt2img-grids",
    "img2img": "img2img-images",
    "img2img-grids": "img2img-grids",
    "extras": "extras-images",
}


#: an absolute POSIX or Windows path not part of a URL: what comes before it is kept, the path shortened
_ABSOLUTE_PATH = re.compile(r"""(^|[\s'"(=\[,])((?:/|[A-Za-z]:\\)[^\s'"()\[\],]*)""")


@dataclass(frozen=True)
class Paths:
    """Resolved locations for one running studio."""

    repo_root: Path
    data_dir: Path
    ckpt_dirs: tuple[Path, ...]
    lora_dir: Path
    vae_dir: Path
    text_encoder_dir: Path
    controlnet_dir: Path
    embeddings_dir: Path
    outputs_dir: Path
    cache_dir: Path

    @property
    def settings_file(self) -> Path:
        return self.data_dir / "config.json"

    @property
    def hash_cache_file(self) -> Path:
        return self.cache_dir / "hashes.json"

    @property
    def jobs_db(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def controlnet_search_dirs(self) -> list[Path]:
        """Where ControlNet models are looked up: ``models/ControlNet`` of the data dir, then the shipped one."""
        return list(dict.fromkeys([self.controlnet_dir, self.repo_root / "models" / "ControlNet"]))

    @property
    def gradio_cache_dir(self) -> Path:
        """Gradio's upload and output cache: inside the data dir, never the host-wide ``/tmp/gradio``."""
        return self.cache_dir / "gradio"

    def shown(self, path: Path | str) -> str:
        """How a server path is shown to a browser or API client: relative to the data dir (or the
        program folder) when inside it, else its file name only; never an absolute server path."""
        path = Path(path)
        for root in (self.data_dir, self.repo_root):
            try:
                return path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
        return path.name

    def scrub(self, text: str) -> str:
        """``text`` with every absolute server path in it replaced by :meth:`shown`'s form (for error
        messages from libraries, which name the files they failed on)."""
        roots = sorted({str(p) for p in (self.data_dir, self.repo_root, self.data_dir.resolve(),
                                          self.repo_root.resolve())}, key=len, reverse=True)
        for root in roots:
            text = text.replace(root + os.sep, "")
        return _ABSOLUTE_PATH.sub(lambda m: m.group(1) + re.split(r"[\\/]", m.group(2))[-1], text)

    def output_dir(self, kind: str) -> Path:
        return self.outputs_dir / OUTPUT_FOLDERS[kind]

    def ensure(self) -> None:
        """Create the writable folders (never the user's model folders' contents)."""
        for folder in (self.data_dir, self.outputs_dir, self.cache_dir, *self.ckpt_dirs, self.lora_dir,
                       self.vae_dir, self.text_encoder_dir, self.controlnet_dir, self.embeddings_dir):
            folder.mkdir(parents=True, exist_ok=True)


def resolve_paths(data_dir: Path | None = None, ckpt_dir: Path | None = None,
                  lora_dir: Path | None = None) -> Paths:
    """Build :class:`Paths` from the command-line choices."""
    data = (data_dir or REPO_ROOT).resolve()
    models = data / "models"
    ckpt_dirs: list[Path] = [ckpt_dir.resolve()] if ckpt_dir else [models / "Stable-diffusion"]
    shipped = REPO_ROOT / "models" / "Stable-diffusion"
    if shipped not in ckpt_dirs:
        ckpt_dirs.append(shipped)
    return Paths(
        repo_root=REPO_ROOT,
        data_dir=data,
        ckpt_dirs=tuple(ckpt_dirs),
        lora_dir=(lora_dir.resolve() if lora_dir else models / "Lora"),
        vae_dir=models / "VAE",
        text_encoder_dir=models / "text_encoder",
        controlnet_dir=models / "ControlNet",
        embeddings_dir=models / "embeddings",
        outputs_dir=data / "outputs",
        cache_dir=data / "cache",
    )
