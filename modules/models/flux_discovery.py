"""Find the CLIP-L, T5-XXL and VAE files a FLUX.1 transformer-only checkpoint needs.

Candidates are the ``*.safetensors`` under ``models/text_encoder`` and ``models/VAE``. A file is
recognised by its header keys (never its name) and accepted only with the width the transformer
expects: CLIP-L hidden size = ``pooled_projection_dim``, T5 ``d_model`` = ``joint_attention_dim``,
VAE latent channels = ``in_channels / 4``. Among several matches a 16/32-bit file beats an fp8 one,
then the name decides, so the pick is stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from modules.models.errors import ModelLoadError
from modules.models.flux_source import ComponentSource
from modules.models.header import SafetensorsHeader, read_safetensors_header

if TYPE_CHECKING:
    from modules.models.loader import LoadOptions

#: How each companion is described to the user: label, usual file name, models subfolder.
COMPONENT_HINTS = {
    "text_encoder": ("CLIP-L text encoder", "clip_l.safetensors", "text_encoder"),
    "text_encoder_2": ("T5-XXL encoder", "t5xxl_fp16.safetensors", "text_encoder"),
    "vae": ("FLUX VAE", "ae.safetensors", "VAE"),
}
_FP8 = frozenset({"F8_E4M3", "F8_E5M2"})
_T5_ROOTS = ("encoder.block.", "encoder.final_layer_norm.", "encoder.embed_tokens.", "shared.")
_CLIP_ROOTS = ("text_model.", "embeddings.", "encoder.layers.", "final_layer_norm.")
_VAE_ROOTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")


@dataclass(frozen=True)
class CompanionNeeds:
    """The widths a FLUX transformer expects from its companions."""

    clip_width: int
    t5_width: int
    latent_channels: int

    @classmethod
    def from_transformer_config(cls, config: Mapping[str, Any]) -> "CompanionNeeds":
        return cls(config["pooled_projection_dim"], config["joint_attention_dim"], config["in_channels"] // 4)

    def width(self, component: str) -> int:
        return {"text_encoder": self.clip_width, "text_encoder_2": self.t5_width,
                "vae": self.latent_channels}[component]

    def describe(self, component: str) -> str:
        return f"{self.latent_channels} latent channels" if component == "vae" else f"{self.width(component)}-wide"


def _key_ending(keys: Iterable[str], suffix: str) -> str | None:
    return next((k for k in keys if k.endswith(suffix)), None)


def classify(path: Path, header: SafetensorsHeader) -> list[tuple[ComponentSource, int]]:
    """Every FLUX companion this file could provide, with its width (bare or all-in-one layouts)."""
    from modules.models.convert import bfl

    keys = list(header.tensors)
    found: list[tuple[ComponentSource, int]] = []
    clip = [k for k in keys if k.startswith(bfl.CLIP_L_PREFIX)] or [
        k for k in keys if k.startswith(_CLIP_ROOTS) or k in bfl.CLIP_EXTRA_KEYS]
    token = _key_ending(clip, "embeddings.token_embedding.weight")
    if token and _key_ending(clip, "encoder.layers.0.mlp.fc1.weight"):
        found.append((ComponentSource("text_encoder", path, header, tuple(clip)), header.tensors[token].shape[1]))
    t5 = [k for k in keys if k.startswith(bfl.T5XXL_PREFIX)] or [k for k in keys if k.startswith(_T5_ROOTS)]
    query = _key_ending(t5, "encoder.block.0.layer.0.SelfAttention.q.weight")
    if query and (_key_ending(t5, "shared.weight") or _key_ending(t5, "encoder.embed_tokens.weight")):
        found.append((ComponentSource("text_encoder_2", path, header, tuple(t5)), header.tensors[query].shape[1]))
    vae = [k for k in keys if k.startswith(bfl.VAE_PREFIXES)] or [
        k for k in keys if k.startswith(_VAE_ROOTS) and not k.startswith(_T5_ROOTS + _CLIP_ROOTS)]
    conv_in = _key_ending(vae, "decoder.conv_in.weight")
    if conv_in and _key_ending(vae, "encoder.conv_in.weight"):
        found.append((ComponentSource("vae", path, header, tuple(vae)), header.tensors[conv_in].shape[1]))
    return found


def _headers(folders: Iterable[Path]) -> Iterable[tuple[Path, SafetensorsHeader]]:
    seen: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.safetensors")):
            if path.resolve() in seen or any(p.startswith(".") for p in path.relative_to(folder).parts):
                continue
            seen.add(path.resolve())
            try:
                yield path, read_safetensors_header(path)
            except ModelLoadError:
                continue  # an unreadable neighbour must not break this load


def _rank(source: ComponentSource) -> tuple[int, str]:
    fp8 = any(source.header.tensors[k].dtype in _FP8 for k in source.keys)
    return (1 if fp8 else 0), source.path.name


def _is_scaled_fp8(source: ComponentSource) -> bool:
    return any(k.endswith((".scale_weight", "scaled_fp8", ".weight_scale")) for k in source.keys)


def _within(path: Path, folders: Iterable[Path]) -> bool:
    return any(path.resolve().is_relative_to(folder.resolve()) for folder in folders)


def find_companions(needed: Iterable[str], needs: CompanionNeeds, text_dirs: list[Path],
                    vae_dirs: list[Path]) -> tuple[dict[str, ComponentSource], list[str]]:
    """A file for each needed component, plus notes on candidates that were refused."""
    matches: dict[str, list[ComponentSource]] = {c: [] for c in needed if c in COMPONENT_HINTS}
    notes: list[str] = []
    for path, header in _headers(text_dirs + vae_dirs):
        in_vae_dir = _within(path, vae_dirs)
        for source, width in classify(path, header):
            component = source.component
            if component not in matches or (component == "vae") != in_vae_dir or width != needs.width(component):
                continue
            if _is_scaled_fp8(source):
                notes.append(f"{path.name} is a scaled-fp8 file, which is not supported")
                continue
            matches[component].append(source)
    return {c: min(found, key=_rank) for c, found in matches.items() if found}, notes


def explicit_vae(path: Path, needs: CompanionNeeds) -> ComponentSource:
    """The user's chosen VAE file (``LoadOptions.vae``), which must be a FLUX VAE."""
    sources = [(s, w) for s, w in classify(Path(path), read_safetensors_header(Path(path))) if s.component == "vae"]
    if not sources:
        raise ModelLoadError(path, "the selected VAE file holds no VAE weights")
    source, width = sources[0]
    if width != needs.latent_channels:
        raise ModelLoadError(path, f"the selected VAE has {width} latent channels; FLUX needs {needs.latent_channels}")
    return source


def component_dirs(checkpoint: Path, options: "LoadOptions") -> tuple[list[Path], list[Path]]:
    """(text encoder folders, VAE folders): any the options name, then ``text_encoder`` and ``VAE``
    beside the ``Stable-diffusion`` folder that holds the checkpoint."""
    text_dirs = [Path(d) for d in (options.text_encoder_dir,) if d]
    vae_dirs = [Path(d) for d in (options.vae_dir,) if d]
    models = next((p.parent for p in Path(checkpoint).resolve().parents if p.name.lower() == "stable-diffusion"),
                  None)
    if models is not None:
        text_dirs.append(models / "text_encoder")
        vae_dirs.append(models / "VAE")
    return _unique(text_dirs), _unique(vae_dirs)


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if all(path.resolve() != seen.resolve() for seen in out):
            out.append(path)
    return out


def missing_message(missing: Iterable[str], needs: CompanionNeeds, text_dirs: list[Path], vae_dirs: list[Path],
                    notes: Iterable[str] = ()) -> str:
    """One line naming each missing file, its width and the folder it belongs in."""
    missing = list(missing)
    parts = []
    for component in missing:
        label, example, subfolder = COMPONENT_HINTS[component]
        folders = vae_dirs if component == "vae" else text_dirs
        where = " or ".join(str(f) for f in folders) or f"models/{subfolder}/"
        parts.append(f"{label} ({example}, {needs.describe(component)}) in {where}")
    text = ("this FLUX file has no " + ", ".join(COMPONENT_HINTS[c][0] for c in missing)
            + "; put " + "; ".join(parts))
    notes = list(notes)
    return text + (" (skipped: " + "; ".join(notes) + ")" if notes else "")
