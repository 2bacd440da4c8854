"""The extra networks browser's model: one card per LoRA, embedding, checkpoint or VAE found in the model
folders, with its picture, sub-folder, size, date, the user's metadata, and what a click on it does.

A card is found again only by listing (``find(kind, card_id)`` compares with the listed ids), so no path a
client sends is ever opened. What a click inserts follows A1111: ``<lora:name:weight>`` with the preferred
weight (the default weight when none is set) followed by the activation text, an embedding's name; a
checkpoint card switches the model (through :func:`modules.models.load_job.switch_model`, by the caller), a
VAE card picks the VAE.

Pure logic: no Gradio, no torch. The web UI (``webui/extra_networks.py``) and the API
(``modules/api/extra_networks_routes.py``) share it.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

from modules.models.network_metadata import (MetadataWriter, UserMetadata, guess_sd_version, read_user_metadata,
                                             training_metadata)
from modules.models.network_previews import OutputUses, beside_preview

if TYPE_CHECKING:
    from PIL import Image

    from modules.models.catalog import CheckpointCatalog
    from modules.paths import Paths

Kind = Literal["lora", "embedding", "checkpoint", "vae"]
KINDS: tuple[Kind, ...] = ("lora", "embedding", "checkpoint", "vae")
KIND_LABELS: dict[str, str] = {"lora": "Lora", "embedding": "Textual Inversion", "checkpoint": "Checkpoints",
                               "vae": "VAE"}
SORTS = ("name", "date", "size")
#: file suffixes per kind (what the add-ons load: modules/generation/addons)
SUFFIXES: dict[str, tuple[str, ...]] = {
    "lora": (".safetensors", ".pt", ".ckpt"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "vae": (".safetensors", ".pt", ".ckpt"),
}
DEFAULT_WEIGHT = 1.0
THUMB_SIZE = 192


class ExtraNetworkError(LookupError):
    """A card that is not (or no longer) there, or an unknown kind (message for the user)."""


@dataclass(frozen=True)
class Card:
    """One model file as the browser shows it."""

    kind: str
    id: str          # its path relative to the folder it was listed from ("sub/Detail.safetensors")
    name: str        # what the prompt names: the file stem; a checkpoint's catalog title
    folder: str      # the sub-folder ("" at the top)
    path: Path
    root: Path
    size: int
    mtime: float
    alias: str = ""  # a LoRA's ss_output_name when it differs from the stem

    @property
    def search_text(self) -> str:
        return f"{self.id} {self.name} {self.alias}".lower()


def _stem(path: Path) -> str:
    return path.name if path.is_dir() else path.stem


def _size(path: Path) -> int:
    try:
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _files_under(root: Path, suffixes: tuple[str, ...]) -> Iterable[Path]:
    from modules.generation.addons.network_files import list_files

    return list_files([root], suffixes)


def _card(kind: str, path: Path, root: Path, name: str | None = None) -> Card:
    relative = path.relative_to(root)
    return Card(kind=kind, id=relative.as_posix(), name=name or _stem(path),
                folder=relative.parent.as_posix() if relative.parent != Path(".") else "", path=path, root=root,
                size=_size(path), mtime=_mtime(path))


def _lora_alias(card: Card) -> str:
    alias = training_metadata(card.path).get("ss_output_name", "").strip()
    return alias if alias and alias != card.name else ""


class _AliasCache:
    """A LoRA's alias per (path, size, mtime): a header is read again only when its file changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, float], str] = {}

    def alias(self, card: Card) -> str:
        key = (str(card.path), card.size, card.mtime)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        alias = _lora_alias(card)
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[key] = alias
        return alias


class ExtraNetworks:
    """Cards per kind from the studio's model folders, their previews and metadata (owned by its caller)."""

    def __init__(self, paths: "Paths", catalog: "CheckpointCatalog | None" = None, *,
                 outputs_rescan_after: float = 2.0) -> None:
        self.paths = paths
        self.catalog = catalog
        self.uses = OutputUses(paths.outputs_dir, rescan_after=outputs_rescan_after)
        self.writer = MetadataWriter()
        self._aliases = _AliasCache()

    # -- listing ------------------------------------------------------------------------------
    def roots(self, kind: str) -> list[Path]:
        if kind == "lora":
            return [self.paths.lora_dir]
        if kind == "embedding":
            return [self.paths.embeddings_dir]
        if kind == "vae":
            return [self.paths.vae_dir]
        if kind == "checkpoint":
            return list(self.paths.ckpt_dirs)
        raise ExtraNetworkError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")

    def all_cards(self, kind: str) -> list[Card]:
        """Every card of ``kind`` (sorted by name)."""
        roots = self.roots(kind)
        cards: list[Card] = []
        if kind == "checkpoint":
            if self.catalog is None:
                return []
            for info in self.catalog.list():
                root = next((r for r in roots if (r / info.name).exists()), None)
                if root is not None:
                    cards.append(_card(kind, root / info.name, root, name=self.catalog.title(info)))
        else:
            seen: set[str] = set()
            for root in roots:
                for path in _files_under(root, SUFFIXES[kind]):
                    card = _card(kind, path, root)
                    if card.id in seen:
                        continue
                    seen.add(card.id)
                    if kind == "lora":
                        card = replace(card, alias=self._aliases.alias(card))
                    cards.append(card)
        return sorted(cards, key=lambda c: c.id.lower())

    def cards(self, kind: str, *, search: str = "", folder: str = "", sort: str = "name",
              descending: bool = False) -> list[Card]:
        """The cards of ``kind`` whose name or path holds every word of ``search``, in ``folder`` (and its
        sub-folders; "" for all), sorted by ``sort`` (name, date or size)."""
        if sort not in SORTS:
            raise ExtraNetworkError(f"unknown sort {sort!r}: one of {', '.join(SORTS)}")
        words = (search or "").lower().split()
        folder = (folder or "").strip("/")
        found = [c for c in self.all_cards(kind)
                 if all(w in c.search_text for w in words)
                 and (not folder or c.folder == folder or c.folder.startswith(folder + "/"))]
        keys = {"name": lambda c: (c.name.lower(), c.id), "date": lambda c: (c.mtime, c.id),
                "size": lambda c: (c.size, c.id)}
        return sorted(found, key=keys[sort], reverse=descending)

    def folders(self, kind: str) -> list[str]:
        """The sub-folders that hold cards of ``kind`` (and their parents), sorted."""
        found: set[str] = set()
        for card in self.all_cards(kind):
            parts = card.folder.split("/") if card.folder else []
            for depth in range(1, len(parts) + 1):
                found.add("/".join(parts[:depth]))
        return sorted(found, key=str.lower)

    def find(self, kind: str, card_id: str) -> Card:
        """The listed card with ``card_id``; ExtraNetworkError when there is none."""
        for card in self.all_cards(kind):
            if card.id == card_id:
                return card
        raise ExtraNetworkError(f"no {KIND_LABELS.get(kind, kind)} named {card_id!r}: press Refresh")

    # -- pictures -----------------------------------------------------------------------------
    def preview(self, card: Card) -> tuple[Path | None, str]:
        """(the picture's file, where it comes from: "file", "output" or "") for a card."""
        beside = beside_preview(card.path, card.root)
        if beside is not None:
            return beside, "file"
        used = None
        if card.kind == "lora":
            used = self.uses.first_lora_use([card.name, card.alias])
        elif card.kind == "embedding":
            used = self.uses.first_embedding_use(card.name)
        elif card.kind == "checkpoint":
            stem = _stem(card.path)
            used = self.uses.first_model_use([stem, card.id.rsplit(".", 1)[0].replace("/", "_")])
        return (used, "output") if used is not None else (None, "")

    def thumbnail(self, card: Card, size: int = THUMB_SIZE) -> Path | None:
        """A small picture file for the card (cached under the cache dir), or None."""
        from modules.gallery.thumbnails import thumbnail

        picture, _ = self.preview(card)
        if picture is None:
            return None
        try:
            return thumbnail(picture, self.paths.cache_dir / "extra-networks", size)
        except OSError:
            return None

    def thumbnail_data_uri(self, card: Card, size: int = THUMB_SIZE) -> str:
        """The thumbnail as a ``data:`` URI ("" when the card has no picture)."""
        path = self.thumbnail(card, size)
        if path is None:
            return ""
        mime = {".png": "image/png", ".webp": "image/webp"}.get(path.suffix.lower(), "image/jpeg")
        try:
            return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        except OSError:
            return ""

    def save_preview(self, card: Card, image: "Image.Image") -> Path:
        """Make ``image`` the card's picture: ``<name>.preview.png`` beside the model (A1111's "Replace
        preview"), written atomically; returns its path."""
        import os

        stem = card.path.name if card.path.is_dir() else card.path.stem
        target = card.path.parent / f"{stem}.preview.png"
        folder, root = target.parent.resolve(), card.root.resolve()
        if target.is_symlink() or (folder != root and root not in folder.parents):
            raise ExtraNetworkError(f"{target.name} is not inside the model folder: not replaced")
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            image.save(tmp, format="PNG")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ExtraNetworkError(f"cannot write {target.name}: {exc.strerror or exc}") from None
        return target

    # -- metadata -----------------------------------------------------------------------------
    def user_metadata(self, card: Card, *, guess_version: bool = True) -> tuple[UserMetadata, str]:
        """(the user's metadata, a note when its file could not be read); a LoRA's unknown ``sd version`` is
        guessed from its training metadata unless ``guess_version`` is False (a header read per card)."""
        metadata, note = read_user_metadata(card.path)
        if guess_version and metadata.sd_version == "Unknown" and card.kind == "lora":
            metadata = metadata.model_copy(update={"sd_version": guess_sd_version(training_metadata(card.path))})
        return metadata, note

    def save_user_metadata(self, card: Card, metadata: UserMetadata) -> Path:
        return self.writer.save(card.path, metadata)

    def training_metadata(self, card: Card) -> dict[str, str]:
        return training_metadata(card.path)

    # -- what a click does ---------------------------------------------------------------------
    def prompt_text(self, card: Card, metadata: UserMetadata | None = None,
                    default_weight: float = DEFAULT_WEIGHT) -> str:
        """What a click on a LoRA or embedding card inserts into the prompt ("" for other kinds)."""
        if metadata is None:
            metadata = self.user_metadata(card)[0]
        if card.kind == "lora":
            weight = metadata.preferred_weight or default_weight
            text = f"<lora:{card.name}:{weight:g}>"
            activation = metadata.activation_text.strip()
            return f"{text} {activation}" if activation else text
        if card.kind == "embedding":
            return card.name
        return ""

    def negative_text(self, card: Card, metadata: UserMetadata | None = None) -> str:
        """What a click on a LoRA card adds to the negative prompt (its "negative text"; "" for none)."""
        if card.kind != "lora":
            return ""
        if metadata is None:
            metadata = self.user_metadata(card, guess_version=False)[0]
        return metadata.negative_text.strip()
