"""ControlNet models in ``models/ControlNet``: listing with sd-webui-controlnet titles, loading, family checks.

Accepted layouts, all loaded offline:

* a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), via
  ``ControlNetModel.from_pretrained(folder, local_files_only=True)``;
* a single file with diffusers keys and its config beside it (``<name>.json``) or in the safetensors
  metadata (``atelier.config``) -- the embedded ``atelier-shapes-canny-v1`` is stored so;
* an original single file (``control_model.*`` / ``input_blocks`` + ``input_hint_block`` + ``zero_convs``,
  ``.safetensors``, or ``.pth`` with ``--allow-pickle``), converted with diffusers' own
  ``convert_controlnet_checkpoint``; its config is the loaded base UNet's (``ControlNetModel.from_unet``'s
  field list) overlaid with what the file's shapes tell (input channels, hint-embedding channels).

Titles are ``"<stem> [<8-hex legacy hash>]"`` like the extension's ``model_list``. Before loading, the
file's cross-attention width and first block width are compared with the loaded UNet, so an SD 1.5
ControlNet on SDXL is refused with a message naming both families.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.generation.addons.network_files import FileCache, list_files
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    import torch

    from modules.models.slots import ModelSlots

CONTROLNET_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_TITLE = re.compile(r"^(.*?)\s*\[[0-9a-fA-F]{8,10}\]$")
_FAMILY_BY_CROSS_DIM = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL"}
_FROM_UNET_KEYS = (
    "in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "only_cross_attention", "block_out_channels",
    "layers_per_block", "downsample_padding", "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps",
    "cross_attention_dim", "attention_head_dim", "num_attention_heads", "use_linear_projection", "class_embed_type",
    "num_class_embeds", "upcast_attention", "resnet_time_scale_shift", "projection_class_embeddings_input_dim",
    "mid_block_type", "transformer_layers_per_block", "encoder_hid_dim", "encoder_hid_dim_type",
    "addition_embed_type", "addition_time_embed_dim",
)


class ControlNetError(InvalidRequestError):
    """A ControlNet model that cannot be used (message for the user)."""


@dataclass(frozen=True)
class ControlNetEntry:
    name: str
    path: Path            # the weights file, or the diffusers folder

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    def weights_file(self) -> Path:
        if not self.is_folder:
            return self.path
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (self.path / name).is_file():
                return self.path / name
        return self.path / "config.json"

    @property
    def title(self) -> str:
        from modules.models.hashing import legacy_model_hash

        return f"{self.name} [{legacy_model_hash(self.weights_file())}]"


def _is_controlnet_folder(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and str(config.get("_class_name", "")).startswith("ControlNet")


@dataclass(frozen=True)
class ControlNetLibrary:
    """The ControlNet models of some folders (``models/ControlNet``, the shipped one)."""

    dirs: tuple[Path, ...]

    def entries(self) -> list[ControlNetEntry]:
        found: list[ControlNetEntry] = []
        seen: set[Path] = set()
        for folder in self.dirs:
            if not folder.is_dir():
                continue
            for config in sorted(folder.rglob("config.json")):
                child = config.parent
                if _is_controlnet_folder(child) and child.resolve() not in seen:
                    seen.add(child.resolve())
                    found.append(ControlNetEntry(child.name, child))
        for path in list_files(self.dirs, CONTROLNET_SUFFIXES):
            if path.stem == "None" or any(parent.resolve() in seen for parent in path.parents):
                continue
            found.append(ControlNetEntry(path.stem, path))
        return found

    def titles(self) -> list[str]:
        return [entry.title for entry in self.entries()]

    def find(self, name: str) -> ControlNetEntry:
        """By title (``name [hash]``), then by name, then case-insensitively."""
        entries = self.entries()
        wanted = name.strip()
        bare = _TITLE.match(wanted)
        stem = bare.group(1) if bare else wanted
        for match in (lambda e: e.title == wanted, lambda e: e.name == stem, lambda e: e.name.lower() == stem.lower()):
            hit = next((e for e in entries if match(e)), None)
            if hit is not None:
                return hit
        where = ", ".join(str(d) for d in self.dirs)
        raise ControlNetError(f"ControlNet model '{name}' not found in {where}")


# --------------------------------------------------------------------------- shapes and configs


def _shapes(entry: ControlNetEntry, state: Mapping[str, Any] | None) -> dict[str, tuple[int, ...]]:
    if state is not None:
        return {k: tuple(v.shape) for k, v in state.items()}
    from modules.models.header import read_safetensors_header

    return read_safetensors_header(entry.path).shapes()


def _strip_prefix(shapes: Mapping[str, Any]) -> dict[str, Any]:
    return {(k[len("control_model."):] if k.startswith("control_model.") else k): v for k, v in shapes.items()}


def _dims(shapes: Mapping[str, tuple[int, ...]]) -> tuple[int | None, int | None]:
    """(cross-attention width, first block width) of a ControlNet state, either layout."""
    flat = _strip_prefix(shapes)
    cross = next((s[1] for k, s in flat.items() if k.endswith("attn2.to_k.weight") and len(s) == 2), None)
    first = flat.get("conv_in.weight") or flat.get("input_blocks.0.0.weight")
    return cross, (first[0] if first else None)


def _family(cross: int | None) -> str:
    return _FAMILY_BY_CROSS_DIM.get(cross or 0, f"cross-attention width {cross}")


def check_fits(name: str, shapes: Mapping[str, tuple[int, ...]], unet_config: Mapping[str, Any],
               model_label: str) -> None:
    """ControlNetError when the ControlNet's widths differ from the base UNet's."""
    cross, first = _dims(shapes)
    base_cross = unet_config.get("cross_attention_dim")
    base_first = list(unet_config.get("block_out_channels") or [None])[0]
    if (cross is not None and cross != base_cross) or (first is not None and first != base_first):
        raise ControlNetError(
            f"ControlNet '{name}' was made for {_family(cross)} (cross-attention width {cross}, first block "
            f"{first} channels) and does not fit the loaded {model_label} model (cross-attention width "
            f"{base_cross}, first block {base_first} channels); pick a ControlNet made for {model_label}")


def config_from_unet(unet_config: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]) -> dict[str, Any]:
    """A ControlNetModel config for an original-layout file: the base UNet's, overlaid with the file's shapes."""
    config = {k: unet_config[k] for k in _FROM_UNET_KEYS if k in unet_config}
    flat = _strip_prefix(shapes)
    if "input_blocks.0.0.weight" in flat:
        config["in_channels"] = flat["input_blocks.0.0.weight"][1]
    hint = sorted((int(k.split(".")[1]), s[0]) for k, s in flat.items()
                  if k.startswith("input_hint_block.") and k.endswith(".weight"))
    if len(hint) >= 3:
        outs = [c for _, c in hint[:-1]]
        config["conditioning_embedding_out_channels"] = [outs[0]] + [c for i, c in enumerate(outs[1:]) if i % 2 == 1]
        config["conditioning_channels"] = int(flat[f"input_hint_block.{hint[0][0]}.weight"][1])
    return config


def _side_config(entry: ControlNetEntry, metadata: Mapping[str, str]) -> dict[str, Any] | None:
    sidecar = entry.path.with_suffix(".json")
    raw: Any = None
    if sidecar.is_file():
        raw = json.loads(sidecar.read_text(encoding="utf-8"))
    elif metadata.get("atelier.config"):
        raw = json.loads(metadata["atelier.config"])
    if raw is None:
        return None
    return {k: v for k, v in raw.items() if not k.startswith("_")}


# --------------------------------------------------------------------------- loading


def _build(state: dict[str, Any], config: dict[str, Any], name: str) -> Any:
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    with init_empty_weights():
        model = ControlNetModel.from_config(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
        raise ControlNetError(f"ControlNet '{name}' does not fit the loaded model ({detail[:200]})") from None
    return model


def load_controlnet(entry: ControlNetEntry, unet_config: Mapping[str, Any], model_label: str, *,
                    dtype: "torch.dtype", device: "torch.device | str", allow_pickle: bool = False) -> Any:
    """A ready ControlNetModel (eval, ``dtype``, ``device``) for the loaded UNet; ControlNetError otherwise."""
    from diffusers import ControlNetModel

    from modules.models.checkpoint import load_state_dict
    from modules.models.errors import ModelLoadError

    if entry.is_folder:
        config = json.loads((entry.path / "config.json").read_text(encoding="utf-8"))
        fake_shapes = {"conv_in.weight": (list(config.get("block_out_channels") or [0])[0],)}
        if config.get("cross_attention_dim"):
            fake_shapes["x.attn2.to_k.weight"] = (0, int(config["cross_attention_dim"]))
        check_fits(entry.name, fake_shapes, unet_config, model_label)
        model = ControlNetModel.from_pretrained(str(entry.path), local_files_only=True, torch_dtype=dtype)
        return model.to(device).eval()
    try:
        shapes = _shapes(entry, None) if entry.path.suffix.lower() == ".safetensors" else None
        if shapes is not None:
            check_fits(entry.name, shapes, unet_config, model_label)
        state, metadata = load_state_dict(entry.path, allow_pickle=allow_pickle)
    except ModelLoadError as exc:
        raise ControlNetError(f"ControlNet '{entry.name}': {exc.reason}") from None
    shapes = _shapes(entry, state)
    check_fits(entry.name, shapes, unet_config, model_label)
    config = _side_config(entry, metadata)
    if "controlnet_cond_embedding.conv_in.weight" not in state:
        from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

        config = config or config_from_unet(unet_config, shapes)
        prefixed = state if any(k.startswith("control_model.") for k in state) else \
            {f"control_model.{k}": v for k, v in state.items()}
        state = convert_controlnet_checkpoint(prefixed, config)
    elif config is None:
        config = config_from_unet(unet_config, {})
        hint = [s for _, s in sorted((int(k.split(".")[2]), s) for k, s in shapes.items()
                                     if k.startswith("controlnet_cond_embedding.blocks.") and k.endswith(".weight"))]
        conv_in = shapes.get("controlnet_cond_embedding.conv_in.weight")
        if conv_in:
            config["conditioning_embedding_out_channels"] = [conv_in[0]] + [s[0] for i, s in enumerate(hint) if i % 2 == 1]
            config["conditioning_channels"] = conv_in[1]
        config["in_channels"] = shapes.get("conv_in.weight", (0, config.get("in_channels", 4)))[1]
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items() if v is not None}
    return _build(state, config, entry.name).to(device).eval()


class ControlNetCache:
    """Loaded ControlNets keyed by file, target UNet config, dtype and device; LRU (caller-owned).

    With ``slots`` (the studio's :class:`~modules.models.slots.ModelSlots`) each ControlNet is held in a slot
    named ``controlnet:<name>#<key hash>``, so it counts against the one model-memory budget and may be
    evicted for room (it is loaded again when next used); this cache then keeps only the slot names.
    """

    def __init__(self, max_entries: int = 4, slots: "ModelSlots | None" = None) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._slots = slots
        self._lock = threading.Lock()

    def get(self, entry: ControlNetEntry, unet_config: Mapping[str, Any], model_label: str, *,
            dtype: "torch.dtype", device: "torch.device | str", allow_pickle: bool = False) -> Any:
        weights = entry.weights_file()
        config = json.dumps(dict(unet_config), sort_keys=True, default=str)
        key = (*FileCache.key(weights), config, str(dtype), str(device))
        if self._slots is not None:
            return self._get_in_slot(key, entry, unet_config, model_label, dtype=dtype, device=device,
                                     allow_pickle=allow_pickle)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        model = load_controlnet(entry, unet_config, model_label, dtype=dtype, device=device, allow_pickle=allow_pickle)
        with self._lock:
            self._entries[key] = model
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return model

    def _get_in_slot(self, key: tuple[Any, ...], entry: ControlNetEntry, unet_config: Mapping[str, Any],
                     model_label: str, *, dtype: "torch.dtype", device: "torch.device | str",
                     allow_pickle: bool) -> Any:
        assert self._slots is not None
        name = f"controlnet:{entry.name}#{hashlib.sha1(repr(key).encode()).hexdigest()[:8]}"
        model = self._slots.slot(name)
        if model is None:
            model = load_controlnet(entry, unet_config, model_label, dtype=dtype, device=device,
                                    allow_pickle=allow_pickle)
            self._slots.put(name, model)
        with self._lock:
            self._entries[key] = name
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._slots.evict(self._entries.popitem(last=False)[1])
        return model


def controlnet_dirs(primary: Path, extra: Sequence[Path] = ()) -> tuple[Path, ...]:
    """``models/ControlNet`` plus extra folders (the repository's shipped one), without duplicates."""
    out: list[Path] = []
    for folder in (primary, *extra):
        if folder.resolve() not in [o.resolve() for o in out]:
            out.append(folder)
    return tuple(out)
