"""``<lora:name:te:unet>`` in the prompt: find, parse, merge into the pipeline for one call, restore exactly.

Like A1111 (``extensions-builtin/Lora``), LoRA updates are merged into the layer weights
(``W' = W + sum(multiplier * scale * up @ down)``) rather than run as side branches, so sampling runs at
full speed. Merging is non-destructive: each patched layer gets a **new** ``weight`` parameter for the
duration of the pipeline call, and the original parameter object is put back afterwards, so the model
is bit-for-bit what it was (a LoRA at weight 0 is not merged at all, giving the no-LoRA output exactly).

``te`` multiplies the text-encoder layers, ``unet`` the UNet layers (A1111: ``unet`` defaults to ``te``,
``te`` to 1.0; named ``te=``/``unet=``/``dyn=`` args work; see :func:`prompt_parser.lora_params`).
LoRAs are looked up in the LoRA folders by file stem, then by the ``ss_output_name`` alias kohya writes
into the file (A1111's alias), then case-insensitively. The infotext gets
``Lora hashes: "name: <12-hex addnet hash>, ..."``. The SDXL refiner pass is left alone (a base-model
LoRA does not fit the refiner). Layers a LoRA names that the model lacks are skipped with a log line
(A1111 "Failed to match keys"); a LoRA none of whose layers exist, or whose shapes differ (a LoRA for
another family), is refused with a message.

Usage: ``hooks=[lora_hook(paths.lora_dir, hashes, LoraCache())]`` for a runner, or directly::

    with apply_loras(pipe, [LoraUse("name", path, parsed, te=1.0, unet=0.8)]):
        pipe(...)
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import torch
from torch import nn

from modules.generation.addons.lora_convert import LoraError, ModuleIndex, ParsedLora, parse_lora
from modules.generation.addons.network_files import FileCache, list_files

if TYPE_CHECKING:
    from modules.generation.addons.hooks import SamplingContext
    from modules.generation.prompts.parser import ExtraNetworkCall
    from modules.models.hashing import HashCache

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors", ".pt", ".ckpt")
LORA_KINDS = ("lora", "lyco")


class LoraCache(FileCache[ParsedLora]):
    """Parsed LoRA files keyed by path + size + mtime (owned by the caller)."""


def read_lora_file(path: Path, *, allow_pickle: bool = False) -> ParsedLora:
    """Parse one LoRA file; LoraError (naming the file) when it cannot be used."""
    from modules.models.checkpoint import load_state_dict
    from modules.models.errors import ModelLoadError

    try:
        state, metadata = load_state_dict(path, allow_pickle=allow_pickle)
    except ModelLoadError as exc:
        raise LoraError(f"LoRA '{path.name}': {exc.reason}") from None
    return parse_lora(state, metadata, label=f"LoRA '{path.name}'")


def _alias(path: Path) -> str | None:
    if path.suffix.lower() != ".safetensors":
        return None
    from modules.models.errors import ModelLoadError
    from modules.models.header import read_safetensors_header

    try:
        value = read_safetensors_header(path).metadata.get("ss_output_name")
    except (ModelLoadError, OSError):
        return None
    return (value.strip() or None) if isinstance(value, str) else None


@dataclass(frozen=True)
class LoraLibrary:
    """The LoRA files of some folders (``models/Lora`` / ``--lora-dir``)."""

    dirs: tuple[Path, ...]

    def files(self) -> list[Path]:
        return list_files(self.dirs, LORA_SUFFIXES)

    def find(self, name: str) -> Path:
        """The file for a prompt name: file stem, then metadata alias, then case-insensitive stem."""
        files = self.files()
        for path in files:
            if path.stem == name:
                return path
        for path in files:
            if _alias(path) == name:
                return path
        lowered = name.lower()
        for path in files:
            if path.stem.lower() == lowered:
                return path
        where = ", ".join(str(d) for d in self.dirs) or "(no LoRA folder)"
        raise LoraError(f"LoRA '{name}' not found: put '{name}.safetensors' in {where}")


@dataclass(frozen=True)
class LoraUse:
    """One LoRA as used in a prompt."""

    name: str
    path: Path
    lora: ParsedLora
    te: float = 1.0
    unet: float = 1.0
    dyn_dim: int | None = None


@dataclass
class LoraReport:
    """What :func:`apply_loras` merged: patched layer count and, per LoRA, the layers it named but the model lacks."""

    patched: int = 0
    unmatched: dict[str, int] = field(default_factory=dict)


def _fits_error(use: LoraUse, module_path: str, detail: str) -> LoraError:
    return LoraError(f"LoRA '{use.name}' does not fit the loaded model (layer {module_path}: {detail}); "
                     f"it was probably made for another model family")


def _merged_updates(pipe: object, uses: Sequence[LoraUse], report: LoraReport) -> dict[int, tuple[nn.Module, torch.Tensor]]:
    index = ModuleIndex.for_pipeline(pipe)
    updates: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    for use in uses:
        matched, unmatched = 0, 0
        for key, module_lora in use.lora.modules.items():
            hit = index.resolve(key)
            if hit is None:
                unmatched += 1
                continue
            matched += 1
            multiplier = use.unet if key[0] == "unet" else use.te
            if multiplier == 0:
                continue
            _, module_path, module = hit
            weight = module.weight
            try:
                delta = module_lora.delta(weight.shape, weight.device, use.dyn_dim) * float(multiplier)
            except ValueError as exc:
                raise _fits_error(use, module_path, str(exc)) from None
            previous = updates.get(id(module))
            updates[id(module)] = (module, delta if previous is None else previous[1] + delta)
        if matched == 0:
            raise LoraError(f"LoRA '{use.name}' does not fit the loaded model: none of its "
                            f"{len(use.lora.modules)} layers exist in it (a LoRA for another model family?)")
        if unmatched:
            report.unmatched[use.name] = unmatched
            log.warning("LoRA '%s': %d of its layers are not in the loaded model and were skipped",
                        use.name, unmatched)
    return updates


@contextlib.contextmanager
def apply_loras(pipe: object, uses: Sequence[LoraUse]) -> Iterator[LoraReport]:
    """Merge ``uses`` into ``pipe``'s UNet and text encoders; the original weights come back on exit."""
    report = LoraReport()
    updates = _merged_updates(pipe, uses, report)
    originals: list[tuple[nn.Module, nn.Parameter]] = []
    try:
        with torch.no_grad():
            for module, delta in updates.values():
                original = module.weight
                # dequantize(): a quantized UNet's int8 weights (unet_quantization) as floats; a float weight as is
                merged = (original.detach().dequantize().to(torch.float32) + delta).to(original.dtype)
                originals.append((module, original))
                module.weight = nn.Parameter(merged, requires_grad=False)
        report.patched = len(originals)
        yield report
    finally:
        for module, original in reversed(originals):
            module.weight = original


def lora_hashes_text(uses: Sequence[LoraUse], hashes: "HashCache") -> str:
    """A1111 ``Lora hashes`` value: ``name: <12-hex addnet hash>`` joined by ", " (names without , and :)."""
    entries: list[str] = []
    for use in uses:
        entry = f"{use.name.replace(':', '').replace(',', '')}: {hashes.addnet_hash(use.path)[:12]}"
        if entry not in entries:
            entries.append(entry)
    return ", ".join(entries)


class LoraHook:
    """A :data:`SamplingHook` applying the prompt's ``<lora:...>`` tags around each pipeline call."""

    extra_network_kinds = LORA_KINDS

    def __init__(self, library: LoraLibrary, hashes: "HashCache | None", cache: LoraCache,
                 *, allow_pickle: bool = False) -> None:
        self.library = library
        self.hashes = hashes
        self.cache = cache
        self.allow_pickle = allow_pickle

    def uses_for(self, calls: Sequence["ExtraNetworkCall"]) -> list[LoraUse]:
        """Resolve and parse the LoRA tags (LoraError for a bad tag or file)."""
        from modules.generation.prompts.parser import PromptSyntaxError, lora_params

        uses: list[LoraUse] = []
        for call in calls:
            if call.kind.lower() not in LORA_KINDS:
                continue
            try:
                params = lora_params(call)
            except PromptSyntaxError as exc:
                raise LoraError(str(exc)) from None
            path = self.library.find(params.name)
            parsed = self.cache.get(path, lambda p: read_lora_file(p, allow_pickle=self.allow_pickle))
            uses.append(LoraUse(params.name, path, parsed, te=params.te_multiplier, unet=params.unet_multiplier,
                                dyn_dim=params.dyn_dim))
        return uses

    def __call__(self, ctx: "SamplingContext") -> contextlib.AbstractContextManager[None]:
        return self._applied(ctx)

    @contextlib.contextmanager
    def _applied(self, ctx: "SamplingContext") -> Iterator[None]:
        uses = self.uses_for(ctx.extra_networks)
        if not uses or ctx.task == "refiner":
            yield
            return
        family = getattr(ctx.model, "family", None)
        if family is not None and family.architecture != "ldm-unet":
            raise LoraError(f"LoRA is supported for SD 1.x, SD 2.x and SDXL models, not {family.label}")
        if self.hashes is not None:
            ctx.infotext_params["Lora hashes"] = lora_hashes_text(uses, self.hashes)
        with apply_loras(ctx.pipe, uses):
            yield


def lora_hook(lora_dir: Path | Sequence[Path], hashes: "HashCache | None", cache: LoraCache,
              *, allow_pickle: bool = False) -> LoraHook:
    """The LoRA :data:`SamplingHook` for files in ``lora_dir`` (one folder or several)."""
    dirs = (Path(lora_dir),) if isinstance(lora_dir, (str, Path)) else tuple(Path(d) for d in lora_dir)
    return LoraHook(LoraLibrary(dirs), hashes, cache, allow_pickle=allow_pickle)
