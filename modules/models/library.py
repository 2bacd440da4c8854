"""The model library: every kind of model file the studio uses, listed, inspected, renamed and deleted.

Kinds and their folders (under ``<data dir>/models`` unless the flags say otherwise): checkpoints
(``Stable-diffusion`` and the shipped one), LoRA, embeddings, VAE, ControlNet, upscalers (``ESRGAN``,
``RealESRGAN``), text encoders, VLMs and classifiers. An entry is a weight file or a model folder (a folder
holding ``model_index.json`` or ``config.json``).

Hardening: an entry is found again only by listing (``find(kind, id)`` compares with the listed ids), so no
path a client sends is ever opened; a rename takes a bare new name (no separator, no ``..``) and keeps the
file in its folder; a delete moves the file (and its ``<name>.json`` / preview beside it) to
``<data dir>/trash/models/``, never removing anything; both are refused for files whose real path leaves
the folder they were listed from (a symlink out) and for the checkpoint that is loaded.

Pure logic: no Gradio, no torch. The web UI and the API share it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from modules.models.catalog import CheckpointCatalog
    from modules.models.hashing import HashCache
    from modules.paths import Paths

LIBRARY_KINDS: tuple[str, ...] = ("checkpoint", "lora", "embedding", "vae", "controlnet", "upscaler",
                                  "text_encoder", "vlm", "classifier")
KIND_LABELS: dict[str, str] = {"checkpoint": "Checkpoints", "lora": "LoRA", "embedding": "Embeddings",
                               "vae": "VAE", "controlnet": "ControlNet", "upscaler": "Upscalers",
                               "text_encoder": "Text encoders", "vlm": "VLMs", "classifier": "Classifiers"}
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
FOLDER_MARKERS = ("model_index.json", "config.json")
#: files that travel with a model when it is renamed or deleted (``<stem><suffix>``)
SIDECARS = (".json", ".preview.png", ".preview.jpg", ".preview.jpeg", ".preview.webp", ".png", ".jpg", ".jpeg",
            ".webp", ".txt", ".yaml")
_NEW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.()+\-\[\]]{0,119}$")
#: kinds whose files get kohya's addnet hash too (A1111's ``Lora hashes``)
ADDNET_KINDS = ("lora",)


class LibraryError(LookupError):
    """A model that is not (or no longer) listed, a bad new name, or a refused change (message for the user)."""


@dataclass(frozen=True)
class Entry:
    """One model file or model folder as the library lists it."""

    kind: str
    id: str          # its path relative to the folder it was listed from
    path: Path
    root: Path
    is_folder: bool
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name if self.is_folder else self.path.stem


def model_roots(paths: "Paths", kind: str) -> list[Path]:
    """The folders listed for ``kind`` (first: where new files of that kind go)."""
    models = paths.data_dir / "models"
    roots: dict[str, list[Path]] = {
        "checkpoint": list(paths.ckpt_dirs), "lora": [paths.lora_dir], "embedding": [paths.embeddings_dir],
        "vae": [paths.vae_dir], "controlnet": paths.controlnet_search_dirs,
        "upscaler": [models / "ESRGAN", models / "RealESRGAN"], "text_encoder": [paths.text_encoder_dir],
        "vlm": [models / "VLM", paths.repo_root / "models" / "VLM"],
        "classifier": [models / "classifier", paths.repo_root / "models" / "classifier"]}
    if kind not in roots:
        raise LibraryError(f"unknown kind {kind!r}: one of {', '.join(LIBRARY_KINDS)}")
    return list(dict.fromkeys(roots[kind]))


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _is_model_folder(path: Path) -> bool:
    return path.is_dir() and any((path / marker).is_file() for marker in FOLDER_MARKERS)


def _scan(root: Path) -> Iterable[tuple[Path, bool]]:
    """(path, is_folder) for weight files and model folders under ``root`` (not inside a model folder)."""
    if not root.is_dir():
        return
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if child.name.startswith("."):
                continue
            if child.is_dir():
                if _is_model_folder(child):
                    yield child, True
                else:
                    stack.append(child)
            elif child.is_file() and child.name.lower().endswith(WEIGHT_SUFFIXES) \
                    and not child.name.endswith(".part"):
                yield child, False


def _inside(path: Path, root: Path) -> bool:
    try:
        real, base = path.resolve(strict=True), root.resolve(strict=True)
    except OSError:
        return False
    return real != base and base in real.parents


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def trigger_words(metadata: dict[str, str], limit: int = 12) -> list[str]:
    """The most frequent training tags (kohya ``ss_tag_frequency``), most frequent first."""
    raw = metadata.get("ss_tag_frequency")
    if not raw:
        return []
    try:
        data = json.loads(raw)
    except (TypeError, ValueError):
        return []
    counts: dict[str, int] = {}
    if isinstance(data, dict):
        for tags in data.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(tag, str) and isinstance(count, (int, float)):
                        counts[tag.strip()] = counts.get(tag.strip(), 0) + int(count)
    ranked = sorted((t for t in counts if t), key=lambda t: (-counts[t], t))
    return ranked[:limit]


class ModelLibrary:
    """Lists, inspects, renames and deletes model files of every kind (owned by its caller)."""

    def __init__(self, paths: "Paths", catalog: "CheckpointCatalog", hashes: "HashCache", *,
                 loaded: Callable[[], Path | None] = lambda: None) -> None:
        self.paths = paths
        self.catalog = catalog
        self.hashes = hashes
        self._loaded = loaded
        self._lock = threading.Lock()
        self._families: dict[tuple[str, float, int], str] = {}
        self._networks: Any = None  # the extra networks' cards (previews from the outputs), made on first use

    @property
    def trash_dir(self) -> Path:
        return self.paths.data_dir / "trash" / "models"

    # -- listing ------------------------------------------------------------------------------
    def entries(self, kind: str, search: str = "") -> list[Entry]:
        """Every entry of ``kind`` whose id holds every word of ``search`` (case-insensitive), sorted by id."""
        words = (search or "").lower().split()
        found: dict[str, Entry] = {}
        for root in model_roots(self.paths, kind):
            for path, is_folder in _scan(root):
                relative = path.relative_to(root).as_posix()
                if relative in found or not all(w in relative.lower() for w in words):
                    continue
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                found[relative] = Entry(kind, relative, path, root, is_folder, _size(path), mtime)
        return sorted(found.values(), key=lambda e: e.id.lower())

    def find(self, kind: str, entry_id: str) -> Entry:
        for entry in self.entries(kind):
            if entry.id == entry_id:
                return entry
        raise LibraryError(f"no {KIND_LABELS.get(kind, kind)} named {entry_id!r}: press Refresh")

    # -- facts --------------------------------------------------------------------------------
    def cached_hashes(self, entry: Entry) -> dict[str, str | None]:
        """AutoV2 (first 10 hex of SHA-256), the full SHA-256 and, for a LoRA, the addnet hash (first 12 hex
        shown by A1111) as far as they are known; never reads the file."""
        if entry.is_folder:
            return {"sha256": None, "autov2": None, "addnet": None}
        sha = self.hashes.cached_sha256(entry.path)
        addnet = self.hashes.cached_addnet_hash(entry.path) if entry.kind in ADDNET_KINDS else None
        return {"sha256": sha, "autov2": sha[:10] if sha else None, "addnet": addnet[:12] if addnet else None}

    def family(self, entry: Entry) -> str:
        """A short family label (header-only reads, cached per file state); "" when unknown."""
        key = (str(entry.path), entry.mtime, entry.size)
        with self._lock:
            if key in self._families:
                return self._families[key]
        label = self._family(entry)
        with self._lock:
            if len(self._families) > 10_000:
                self._families.clear()
            self._families[key] = label
        return label

    def _family(self, entry: Entry) -> str:
        from modules.models.errors import ModelLoadError
        from modules.models.network_metadata import guess_sd_version, training_metadata

        if entry.kind == "checkpoint":
            from modules.models.detect import detect_checkpoint

            try:
                return detect_checkpoint(entry.path, allow_pickle=False).family.label
            except ModelLoadError:
                return "unknown"
        if entry.kind == "lora":
            version = guess_sd_version(training_metadata(entry.path))
            return "" if version == "Unknown" else version
        if entry.is_folder:
            return _folder_architecture(entry.path)
        return ""

    def header_metadata(self, entry: Entry) -> dict[str, str]:
        """The safetensors ``__metadata__`` (full values), {} for other formats or an unreadable header."""
        if entry.is_folder or entry.path.suffix.lower() != ".safetensors":
            return {}
        from modules.models.errors import ModelLoadError
        from modules.models.header import read_safetensors_header

        try:
            return dict(read_safetensors_header(entry.path).metadata)
        except ModelLoadError:
            return {}

    def details(self, entry: Entry) -> dict[str, Any]:
        """Everything the inspector shows: family, size, hashes, kohya ``ss_*`` fields, trigger words, the
        user's notes (``<name>.json``) and where the preview comes from."""
        from modules.models.network_metadata import read_user_metadata, training_metadata
        from modules.models.network_previews import beside_preview

        metadata = self.header_metadata(entry)
        user, note = read_user_metadata(entry.path)
        preview, source = self.preview(entry)
        return {"kind": entry.kind, "id": entry.id, "name": entry.name, "path": self.paths.shown(entry.path),
                "is_folder": entry.is_folder, "size": entry.size, "size_text": human_size(entry.size),
                "mtime": entry.mtime, "family": self.family(entry), **self.cached_hashes(entry),
                "training": {k: v for k, v in training_metadata(entry.path).items() if k.startswith("ss_")},
                "metadata": {k: v for k, v in training_metadata(entry.path).items() if not k.startswith("ss_")},
                "trigger_words": trigger_words(metadata), "user_metadata": user.as_file(), "user_metadata_note": note,
                "preview": self.paths.shown(preview) if preview is not None else None, "preview_source": source or None,
                "loaded": self._is_loaded(entry)}

    def _card(self, entry: Entry) -> Any:
        """The extra networks' card of a LoRA, embedding, checkpoint or VAE (None for other kinds)."""
        from modules.models.extra_networks import KINDS, ExtraNetworkError, ExtraNetworks

        if entry.kind not in KINDS:
            return None
        with self._lock:
            if self._networks is None:
                self._networks = ExtraNetworks(self.paths, self.catalog)
            networks = self._networks
        try:
            return networks.find(entry.kind, entry.id)
        except ExtraNetworkError:
            return None

    def preview(self, entry: Entry) -> tuple[Path | None, str]:
        """(the picture, "file" when it is beside the model or "output" for the first image made with it)."""
        from modules.models.network_previews import beside_preview

        card = self._card(entry)
        if card is not None:
            return self._networks.preview(card)
        picture = beside_preview(entry.path, entry.root)
        return (picture, "file") if picture is not None else (None, "")

    def preview_data_uri(self, entry: Entry, size: int = 192) -> str:
        """The preview as a small ``data:`` URI ("" when there is none)."""
        import base64

        from modules.gallery.thumbnails import thumbnail

        picture, _ = self.preview(entry)
        if picture is None:
            return ""
        try:
            small = thumbnail(picture, self.paths.cache_dir / "extra-networks", size)
            mime = {".png": "image/png", ".webp": "image/webp"}.get(small.suffix.lower(), "image/jpeg")
            return f"data:{mime};base64," + base64.b64encode(small.read_bytes()).decode("ascii")
        except (OSError, ValueError):
            return ""

    def rows(self, kind: str, search: str = "") -> list[list[Any]]:
        """Table rows: id, family, size, AutoV2, addnet (LoRA), "✓" for the loaded checkpoint."""
        out = []
        for entry in self.entries(kind, search):
            hashes = self.cached_hashes(entry)
            out.append([entry.id, self.family(entry), human_size(entry.size),
                        hashes["autov2"] or ("—" if entry.is_folder else "not hashed yet"), hashes["addnet"] or "",
                        "✓" if kind == "checkpoint" and self._is_loaded(entry) else ""])
        return out

    def _is_loaded(self, entry: Entry) -> bool:
        loaded = self._loaded()
        try:
            return loaded is not None and loaded.resolve() == entry.path.resolve()
        except OSError:
            return False

    # -- changes ------------------------------------------------------------------------------
    def _check_mutable(self, entry: Entry, action: str) -> None:
        shipped = self.paths.repo_root / "models"
        if self.paths.data_dir.resolve() != self.paths.repo_root.resolve() and (
                entry.root == shipped or shipped in entry.root.parents):
            raise LibraryError(f"{entry.id} ships with the studio (read-only here): not {action}")
        if not _inside(entry.path, entry.root):
            raise LibraryError(f"{entry.id} is not a file of the model folder (a link out of it?): not {action}")
        if entry.kind == "checkpoint" and self._is_loaded(entry):
            raise LibraryError(f"{entry.id} is the loaded checkpoint: load another one first, then {action[:-1]} it")

    def rename(self, kind: str, entry_id: str, new_name: str) -> Entry:
        """Rename a listed model (its extension kept) and the files beside it that carry its name."""
        entry = self.find(kind, entry_id)
        self._check_mutable(entry, "renamed")
        stem = (new_name or "").strip()
        suffix = "" if entry.is_folder else entry.path.suffix
        if suffix and stem.lower().endswith(suffix.lower()):
            stem = stem[: -len(suffix)]
        if not _NEW_NAME.match(stem) or ".." in stem:
            raise LibraryError("new name: letters, digits, space and _ . ( ) [ ] + - only, starting with a letter "
                               "or digit, no folder separators")
        target = entry.path.with_name(stem + suffix)
        if target.exists():
            raise LibraryError(f"{target.name} exists already in that folder: pick another name")
        moves = [(entry.path, target)] + [(side, target.with_name(stem + tail))
                                          for side, tail in self._sidecars(entry)]
        for _, dest in moves[1:]:
            if dest.exists():
                raise LibraryError(f"{dest.name} exists already in that folder: pick another name")
        for source, dest in moves:
            os.replace(source, dest)
        self.hashes.carry(entry.path, target)
        self._refresh(kind)
        return self.find(kind, target.relative_to(entry.root).as_posix())

    def delete(self, kind: str, entry_id: str) -> Path:
        """Move a listed model (and the files beside it that carry its name) to ``<data>/trash/models/``;
        returns where it went. Nothing is removed from the disk."""
        entry = self.find(kind, entry_id)
        self._check_mutable(entry, "deleted")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        bin_dir = self.trash_dir / f"{stamp}-{kind}"
        index = 1
        while (bin_dir / entry.path.name).exists():
            index += 1
            bin_dir = self.trash_dir / f"{stamp}-{kind}-{index}"
        bin_dir.mkdir(parents=True, exist_ok=True)
        sidecars = self._sidecars(entry)
        _move(entry.path, bin_dir / entry.path.name)
        for side, _ in sidecars:
            _move(side, bin_dir / side.name)
        (bin_dir / "from.txt").write_text(self.paths.shown(entry.path) + "\n", encoding="utf-8")
        self._refresh(kind)
        return bin_dir / entry.path.name

    def _sidecars(self, entry: Entry) -> list[tuple[Path, str]]:
        out = []
        for tail in SIDECARS:
            side = entry.path.with_name(entry.name + tail)
            if side != entry.path and side.is_file() and _inside(side, entry.root):
                out.append((side, tail))
        return out

    def _refresh(self, kind: str) -> None:
        if kind == "checkpoint":
            self.catalog.refresh()


def _move(source: Path, dest: Path) -> None:
    """Rename, or copy then remove across file systems (shutil.move)."""
    import shutil

    shutil.move(str(source), str(dest))


def _folder_architecture(folder: Path) -> str:
    """A model folder's architecture from its ``config.json`` / ``model_index.json`` ("" when unreadable)."""
    for marker in ("model_index.json", "config.json"):
        try:
            data = json.loads((folder / marker).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            name = data.get("_class_name") or (data.get("architectures") or [""])[0] or data.get("model_type")
            if isinstance(name, str):
                return name
    return ""
