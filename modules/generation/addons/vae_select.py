"""A1111's ``sd_vae`` choice: "Automatic", "None" or a file from ``models/VAE``, switched without a reload.

* ``"Automatic"``: a VAE beside the checkpoint (``<checkpoint stem>.vae.safetensors`` / ``.vae.pt`` /
  ``.vae.ckpt``), else a ``models/VAE`` file whose name starts with the checkpoint's stem (A1111
  ``find_vae_near_checkpoint``), else the checkpoint's own VAE.
* ``"None"``: the checkpoint's own VAE.
* a file name (``vae-ft-mse-840000-ema-pruned.safetensors``, or its stem): that file, in the original
  LDM layout (bare, ``first_stage_model.`` or ``vae.`` keys) or a diffusers ``AutoencoderKL`` state dict.

The file is converted with the loader's own helpers (:func:`modules.models.convert.ldm_import.build_vae`,
strict key/shape checks) against the loaded VAE's config, cast to its dtype/device, kept in a small
:class:`VaeCache` owned by the caller, and swapped into the pipeline for the duration; the original VAE
module is put back afterwards. Infotext: ``VAE hash`` (first 10 hex of the file's SHA-256) and ``VAE``
(the file name), written only when an external VAE is used, as A1111.

Two ways in: :func:`selected_vae` wraps a whole job (so img2img's init-image encoding and the decode
between hires passes use the chosen VAE too), and :func:`vae_hook` is the per-pipeline-call
:data:`SamplingHook` (decode inside each pipeline call, plus the infotext). Use both for full coverage:
inside :func:`selected_vae` the hook finds the VAE already in place and only writes the infotext.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import torch

from modules.generation.addons.network_files import FileCache, list_files
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.addons.hooks import SamplingContext
    from modules.models.hashing import HashCache
    from modules.models.loader import LoadedModel

AUTOMATIC = "Automatic"
NONE = "None"
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
NEAR_CHECKPOINT_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")


class VaeSelectError(InvalidRequestError):
    """A VAE choice that cannot be used (message for the user)."""


def _dirs(value: Path | str | Sequence[Path]) -> tuple[Path, ...]:
    return (Path(value),) if isinstance(value, (str, Path)) else tuple(Path(v) for v in value)


def list_vaes(vae_dir: Path | Sequence[Path]) -> list[Path]:
    """The VAE files of ``models/VAE`` (recursive)."""
    return list_files(_dirs(vae_dir), VAE_SUFFIXES)


def _checkpoint_stem(checkpoint: Path) -> str:
    return checkpoint.name if checkpoint.is_dir() else checkpoint.stem


def resolve_vae(choice: str | None, checkpoint: Path, vae_dir: Path | Sequence[Path]) -> Path | None:
    """The VAE file for ``choice`` (None: the checkpoint's own VAE)."""
    choice = (choice or AUTOMATIC).strip()
    if choice == NONE:
        return None
    files = list_vaes(vae_dir)
    if choice == AUTOMATIC:
        if not checkpoint.is_dir():
            base = checkpoint.with_suffix("")
            for suffix in NEAR_CHECKPOINT_SUFFIXES:
                near = base.parent / f"{base.name}{suffix}"
                if near.is_file():
                    return near
        stem = _checkpoint_stem(checkpoint)
        return next((p for p in files if p.name.startswith(stem)), None)
    for match in (lambda p: p.name == choice, lambda p: p.stem == choice,
                  lambda p: p.name.lower() == choice.lower() or p.stem.lower() == choice.lower()):
        found = next((p for p in files if match(p)), None)
        if found is not None:
            return found
    candidate = Path(choice)
    if candidate.is_absolute() and candidate.is_file():
        return candidate
    names = ", ".join(p.name for p in files) or "none"
    where = ", ".join(str(d) for d in _dirs(vae_dir))
    raise VaeSelectError(f"VAE '{choice}' not found in {where} (available: {names}; or use Automatic / None)")


def read_vae_state(path: Path, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a VAE file (VaeSelectError naming the file when unreadable)."""
    from modules.models.checkpoint import load_state_dict
    from modules.models.errors import ModelLoadError

    try:
        state, _ = load_state_dict(path, allow_pickle=allow_pickle)
    except ModelLoadError as exc:
        raise VaeSelectError(f"VAE '{path.name}': {exc.reason}") from None
    return state


def build_vae_like(state: dict[str, torch.Tensor], like: Any, name: str) -> Any:
    """An AutoencoderKL with ``like``'s config, dtype and device holding ``state`` (LDM or diffusers keys)."""
    from diffusers import AutoencoderKL

    from modules.models.convert.ldm_import import ComponentError, build_vae

    config = {k: v for k, v in dict(like.config).items() if not k.startswith("_")}
    dtype, device = like.dtype, like.device
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in state:
        model = AutoencoderKL.from_config(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise VaeSelectError(f"VAE '{name}' does not fit the loaded model ({str(exc).splitlines()[0]})") from None
        return model.to(device=device, dtype=dtype).eval()
    for prefix in ("first_stage_model.", "vae.", ""):
        if f"{prefix}encoder.conv_in.weight" in state and f"{prefix}decoder.conv_out.weight" in state:
            try:
                return build_vae(state, prefix, config, dtype).to(device)
            except ComponentError as exc:
                raise VaeSelectError(f"VAE '{name}' does not fit the loaded model ({exc})") from None
    raise VaeSelectError(f"VAE '{name}' is not a VAE (no encoder.conv_in / decoder.conv_out tensors)")


class VaeCache:
    """Converted VAEs keyed by file (path, size, mtime), target config, dtype and device; LRU (caller-owned)."""

    def __init__(self, max_entries: int = 2) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, like: Any, *, allow_pickle: bool = False) -> Any:
        config = json.dumps({k: v for k, v in dict(like.config).items() if not k.startswith("_")},
                            sort_keys=True, default=str)
        key = (*FileCache.key(path), config, str(like.dtype), str(like.device))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        vae = build_vae_like(read_vae_state(path, allow_pickle=allow_pickle), like, path.name)
        with self._lock:
            self._entries[key] = vae
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return vae


def vae_infotext(path: Path, hashes: "HashCache | None") -> dict[str, str]:
    """A1111's ``VAE hash`` / ``VAE`` entries for an external VAE file."""
    params = {"VAE": path.name}
    if hashes is not None:
        params = {"VAE hash": hashes.sha256(path)[:10], **params}
    return params


@contextlib.contextmanager
def swapped_vae(pipe: Any, vae: Any) -> Iterator[None]:
    """``pipe.vae`` is ``vae`` inside the block; the original module comes back on exit."""
    original = pipe.vae
    if original is vae:
        yield
        return
    pipe.vae = vae
    try:
        yield
    finally:
        pipe.vae = original


@contextlib.contextmanager
def selected_vae(model: "LoadedModel", choice: str | None, vae_dir: Path | Sequence[Path], cache: VaeCache,
                 *, allow_pickle: bool = False) -> Iterator[Path | None]:
    """Job-level VAE choice: the model's pipeline (and every pipeline derived from it meanwhile) uses the
    chosen VAE inside the block; yields the file used (None: the checkpoint's own)."""
    path = resolve_vae(choice, model.path, vae_dir)
    if path is None:
        yield None
        return
    vae = cache.get(path, model.pipeline.vae, allow_pickle=allow_pickle)
    with swapped_vae(model.pipeline, vae):
        yield path


class VaeHook:
    """A :data:`SamplingHook` using the chosen VAE in each pipeline call and writing its infotext."""

    def __init__(self, choice: str | None, vae_dirs: tuple[Path, ...], hashes: "HashCache | None", cache: VaeCache,
                 *, allow_pickle: bool = False) -> None:
        self.choice = choice
        self.vae_dirs = vae_dirs
        self.hashes = hashes
        self.cache = cache
        self.allow_pickle = allow_pickle

    def __call__(self, ctx: "SamplingContext") -> contextlib.AbstractContextManager[None]:
        return self._applied(ctx)

    @contextlib.contextmanager
    def _applied(self, ctx: "SamplingContext") -> Iterator[None]:
        path = resolve_vae(self.choice, ctx.model.path, self.vae_dirs)
        if path is None or getattr(ctx.pipe, "vae", None) is None:
            yield
            return
        vae = self.cache.get(path, ctx.pipe.vae, allow_pickle=self.allow_pickle)
        ctx.infotext_params.update(vae_infotext(path, self.hashes))
        with swapped_vae(ctx.pipe, vae):
            yield


def vae_hook(choice: str | None, vae_dir: Path | Sequence[Path], hashes: "HashCache | None", cache: VaeCache,
             *, allow_pickle: bool = False) -> VaeHook:
    """The VAE-selection :data:`SamplingHook` for ``choice`` ("Automatic", "None" or a file in ``vae_dir``)."""
    return VaeHook(choice, _dirs(vae_dir), hashes, cache, allow_pickle=allow_pickle)
