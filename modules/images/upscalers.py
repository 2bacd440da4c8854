"""Upscalers for hires fix and img2img: A1111's latent modes, Lanczos/Nearest, and ESRGAN-family models.

* **Latent modes** (``shared.latent_upscale_modes``) interpolate the latents themselves:
  ``Latent`` bilinear, ``Latent (antialiased)`` bilinear+antialias, ``Latent (bicubic)``,
  ``Latent (bicubic antialiased)``, ``Latent (nearest)``, ``Latent (nearest-exact)``.
* **Lanczos / Nearest** resize pixels (A1111's ``UpscalerLanczos`` / ``UpscalerNearest``).
* **Model upscalers**: every ``.pth`` / ``.pt`` / ``.safetensors`` file in the given folders
  (:meth:`UpscalerSet.for_models_dir`: ``models/ESRGAN``, ``RealESRGAN``, ``SwinIR``, ``DAT``, ``HAT``) is offered under its file stem and loaded with
  `spandrel <https://pypi.org/project/spandrel/>`_ (ESRGAN, Real-ESRGAN, SwinIR, ... detected from the
  weights). Models run tiled, so large images fit in memory. A file spandrel cannot read gives an
  :class:`UpscalerError` naming it. One model is kept loaded per :class:`UpscalerSet`.

``upscale_image`` follows A1111's ``Upscaler.upscale``: the target is ``size * scale`` rounded down to
a multiple of 8, the model is applied (up to 3 times) until the image is at least that big, then
Lanczos brings it to the exact target.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Mapping, Sequence

from PIL import Image

if TYPE_CHECKING:
    import torch

#: name -> (torch interpolate mode, antialias), A1111's table
LATENT_MODES: Final[Mapping[str, tuple[str, bool]]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS: Final[Mapping[str, Image.Resampling]] = {
    "Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
MODEL_SUFFIXES: Final[tuple[str, ...]] = (".pth", ".pt", ".safetensors")
#: A1111's upscaler model folders under ``models/`` (all read through spandrel)
MODEL_FOLDERS: Final[tuple[str, ...]] = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "HAT")
TILE: Final[int] = 256
TILE_OVERLAP: Final[int] = 16


class UpscalerError(ValueError):
    """Unknown upscaler or an unreadable model file (message for the user)."""


@dataclass(frozen=True)
class ModelUpscalerInfo:
    name: str
    path: Path


def interpolate_latents(latents: "torch.Tensor", height: int, width: int, mode_name: str) -> "torch.Tensor":
    """Resize ``(B, C, h, w)`` latents to ``(height, width)`` with a latent mode (see :data:`LATENT_MODES`)."""
    import torch.nn.functional as F

    if mode_name not in LATENT_MODES:
        raise UpscalerError(f"{mode_name!r} is not a latent upscale mode ({', '.join(LATENT_MODES)})")
    mode, antialias = LATENT_MODES[mode_name]
    source = latents.float()
    if mode in ("nearest", "nearest-exact"):
        out = F.interpolate(source, size=(height, width), mode=mode)
    else:
        out = F.interpolate(source, size=(height, width), mode=mode, antialias=antialias, align_corners=False)
    return out.to(latents.dtype)


class UpscalerSet:
    """The upscalers available to a studio: built-ins plus the model files found in ``model_dirs``."""

    def __init__(self, model_dirs: Sequence[Path] = (), device: str = "cpu") -> None:
        self._dirs = tuple(Path(d) for d in model_dirs)
        self._device = device
        self._lock = threading.Lock()
        self._loaded: tuple[Path, Any] | None = None

    @classmethod
    def for_models_dir(cls, models_dir: Path, device: str = "cpu") -> "UpscalerSet":
        """The set for a studio's ``models/`` folder (``models/ESRGAN``, ``models/RealESRGAN``, ...)."""
        return cls([Path(models_dir) / name for name in MODEL_FOLDERS], device=device)

    # ------------------------------------------------------------------ listing

    def models(self) -> list[ModelUpscalerInfo]:
        """Model upscaler files, by name (file stem), first folder wins on a name clash."""
        found: dict[str, ModelUpscalerInfo] = {}
        for folder in self._dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES and path.stem not in found:
                    found[path.stem] = ModelUpscalerInfo(path.stem, path)
        return list(found.values())

    def names(self, *, latent: bool = True) -> list[str]:
        """Every usable name (A1111's hires upscaler list order: latent modes, then the rest)."""
        return [*(LATENT_MODES if latent else ()), *PIXEL_UPSCALERS, *(m.name for m in self.models())]

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` (case-insensitive); UpscalerError listing choices if unknown."""
        for known in self.names():
            if known.lower() == (name or "").strip().lower():
                return known
        raise UpscalerError(f"upscaler {name!r} not found; available: {', '.join(self.names())}")

    @staticmethod
    def is_latent(name: str) -> bool:
        return name in LATENT_MODES

    # ------------------------------------------------------------------ pixels

    def upscale_image(self, image: Image.Image, scale: float, name: str) -> Image.Image:
        """A1111 ``Upscaler.upscale``: ``image`` scaled by ``scale`` (target rounded down to 8)."""
        name = self.resolve(name)
        if name in LATENT_MODES:
            raise UpscalerError(f"{name!r} works on latents, not images")
        dest_w = int((image.width * scale) // 8 * 8)
        dest_h = int((image.height * scale) // 8 * 8)
        if dest_w < 1 or dest_h < 1:
            raise UpscalerError(f"scaling {image.width}x{image.height} by {scale:g} gives an empty image")
        for _ in range(3):
            if image.width >= dest_w and image.height >= dest_h and scale != 1:
                break
            before = image.size
            image = self._upscale_once(image, name, scale)
            if image.size == before:
                break
        if image.size != (dest_w, dest_h):
            image = image.resize((dest_w, dest_h), resample=Image.Resampling.LANCZOS)
        return image

    def _upscale_once(self, image: Image.Image, name: str, scale: float) -> Image.Image:
        if name in PIXEL_UPSCALERS:
            return image.resize((int(image.width * scale), int(image.height * scale)),
                                resample=PIXEL_UPSCALERS[name])
        info = next(m for m in self.models() if m.name == name)
        return self._run_model(info.path, image)

    # ------------------------------------------------------------------ models

    def _model(self, path: Path) -> Any:
        with self._lock:
            if self._loaded is not None and self._loaded[0] == path:
                return self._loaded[1]
            self._loaded = None
            try:
                from spandrel import ImageModelDescriptor, ModelLoader
            except ImportError:
                raise UpscalerError(f"upscaler model {path.name} needs the 'spandrel' package") from None
            try:
                model = ModelLoader(device=self._device).load_from_file(str(path))
            except Exception as exc:  # noqa: BLE001 - any unreadable/unsupported file
                raise UpscalerError(f"cannot load upscaler model {path.name}: {exc}") from None
            if not isinstance(model, ImageModelDescriptor):
                raise UpscalerError(f"{path.name} is not an image upscaling model")
            model.eval()
            self._loaded = (path, model)
            return model

    def _run_model(self, path: Path, image: Image.Image) -> Image.Image:
        import numpy as np
        import torch

        model = self._model(path)
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(model.device, model.dtype)
        with torch.inference_mode():
            out = _tiled(model, tensor, int(model.scale))
        pixels = (out[0].permute(1, 2, 0).float().cpu().numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        return Image.fromarray(pixels)


def _tiled(model: Any, tensor: "torch.Tensor", scale: int) -> "torch.Tensor":
    """Run ``model`` over overlapping tiles and average the overlaps (seam-free, bounded memory)."""
    import torch

    _, channels, height, width = tensor.shape
    if height <= TILE and width <= TILE:
        return model(tensor)
    out = torch.zeros((1, channels, height * scale, width * scale), dtype=tensor.dtype, device=tensor.device)
    weight = torch.zeros_like(out[:, :1])
    step = TILE - TILE_OVERLAP
    for top in range(0, max(height - TILE_OVERLAP, 1), step):
        for left in range(0, max(width - TILE_OVERLAP, 1), step):
            y0, x0 = min(top, max(height - TILE, 0)), min(left, max(width - TILE, 0))
            y1, x1 = min(y0 + TILE, height), min(x0 + TILE, width)
            tile = model(tensor[:, :, y0:y1, x0:x1])
            out[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += tile
            weight[:, :, y0 * scale:y1 * scale, x0 * scale:x1 * scale] += 1
    return out / weight.clamp(min=1)
