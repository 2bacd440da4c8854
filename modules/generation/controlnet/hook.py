"""ControlNet in a generation job: the :data:`SamplingHook` for a list of sd-webui-controlnet units.

Per pipeline call the hook resolves each active unit's model (``models/ControlNet``, checked against the
loaded family), runs its preprocessor once per job (at ``processor_res``, or the pixel-perfect resolution
of the first pass), resizes the detected map to that pass's pixel size with the unit's resize mode, and
feeds the ControlNet residuals into the UNet for the call (:mod:`modules.generation.controlnet.inject`,
which documents the weight / guidance / control mode semantics). Units apply to txt2img, img2img,
inpainting and the hires pass (``hr_option``: "Both", "Low res only", "High res only"); the SDXL refiner
pass is left alone. As in the extension, a unit without an image uses the img2img init image (with the
img2img resize mode), and a unit mask with strokes is used as the control map itself (module "none"). The infotext gets one entry per active unit::

    ControlNet 0: "Module: canny, Model: name [hash], Weight: 1.0, Resize Mode: Crop and Resize,
                   Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0,
                   Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced"

Usage: ``hooks=[controlnet_hook(units_from_alwayson(payload["alwayson_scripts"]), paths.controlnet_dir)]``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from modules.generation.controlnet.inject import ActiveControl, ControlInjector, injected
from modules.generation.controlnet.models import ControlNetCache, ControlNetError, ControlNetLibrary, controlnet_dirs
from modules.generation.controlnet.preprocess import (AnnotatorCache, find_preprocessor, hwc3, pixel_perfect_resolution,
                                                      resize_to_target, run_preprocessor)
from modules.generation.controlnet.units import RESIZE_MODE_NAMES, ControlNetUnit, unit_infotext, units_from_alwayson

if TYPE_CHECKING:
    from modules.generation.addons.hooks import SamplingContext

__all__ = ["ControlNetError", "ControlNetHook", "ControlNetUnit", "controlnet_hook", "detect_maps",
           "units_from_alwayson"]


def target_size(ctx: "SamplingContext") -> tuple[int, int]:
    """(width, height) in pixels of the pipeline call about to run."""
    kwargs = ctx.call_kwargs
    if kwargs.get("width") and kwargs.get("height"):
        return int(kwargs["width"]), int(kwargs["height"])
    image = kwargs.get("image")
    factor = int(getattr(ctx.model, "vae_scale_factor", 8))
    if torch.is_tensor(image) and image.dim() == 4:
        return int(image.shape[-1]) * factor, int(image.shape[-2]) * factor
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, (list, tuple)) and image and isinstance(image[0], Image.Image):
        return image[0].size
    raise ControlNetError("cannot tell the image size of this pass for ControlNet")


def processor_resolution(unit: ControlNetUnit, source: np.ndarray, width: int, height: int, resize_mode: str) -> int:
    if unit.pixel_perfect:
        return pixel_perfect_resolution(source, height, width, resize_mode)
    return unit.processor_res if unit.processor_res > 0 else 512


def thresholds(unit: ControlNetUnit, module: str) -> tuple[float, float]:
    """The unit's thresholds with -1 replaced by the module's defaults (the extension's ``bound_check_params``)."""
    pre = find_preprocessor(module)
    a = pre.threshold_a.value if pre.threshold_a and unit.threshold_a < 0 else unit.threshold_a
    b = pre.threshold_b.value if pre.threshold_b and unit.threshold_b < 0 else unit.threshold_b
    return float(a), float(b)


def as_tensor(control: np.ndarray) -> torch.Tensor:
    """An HWC uint8 control map as ``(1, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(control)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


@dataclass(frozen=True)
class PreparedUnit:
    """A unit's detected map (computed once per job) and what its infotext reports."""

    detected: np.ndarray
    module: str
    resize_mode: str
    processor_res: int
    threshold_a: float
    threshold_b: float


def _img2img_resize_mode(req: Any) -> str:
    mode = int(getattr(req, "resize_mode", 0) or 0)
    return RESIZE_MODE_NAMES[mode] if 0 <= mode < len(RESIZE_MODE_NAMES) else "Just Resize"


def _mask_strokes(data: str, index: int) -> np.ndarray | None:
    """The extension's rule: a unit mask that is not blank (all <= 5 or all >= 250) becomes the input."""
    from modules.generation.runners.img2img import decode_request_image

    channel = np.asarray(decode_request_image(data, f"ControlNet unit {index} mask"))
    channel = channel[:, :, 0] if channel.ndim == 3 else channel
    if (channel <= 5).all() or (channel >= 250).all():
        return None
    return hwc3(channel)


def prepare_unit(unit: ControlNetUnit, index: int, req: Any, width: int, height: int,
                 annotators: AnnotatorCache | None, seed: int) -> PreparedUnit:
    """Choose the unit's input (its image, its mask strokes, or the img2img init image) and run its preprocessor."""
    from modules.generation.runners.img2img import decode_request_image

    module, resize_mode = find_preprocessor(unit.module).name, unit.resize_mode
    init_images = getattr(req, "init_images", None) or []
    if unit.image:
        source = hwc3(np.asarray(decode_request_image(unit.image, f"ControlNet unit {index} image").convert("RGBA")))
        strokes = _mask_strokes(unit.mask, index) if unit.mask else None
        if strokes is not None:
            source, module = strokes, "none"
    elif init_images:
        source = hwc3(np.asarray(decode_request_image(init_images[0], "init image").convert("RGBA")))
        resize_mode = _img2img_resize_mode(req)
    else:
        raise ControlNetError(f"ControlNet unit {index} has no image: send one in the unit's 'image'")
    a, b = thresholds(unit, module)
    resolution = processor_resolution(unit, source, width, height, resize_mode)
    detected = run_preprocessor(source, module, resolution=resolution, threshold_a=a, threshold_b=b,
                                annotators=annotators, seed=seed)
    return PreparedUnit(detected, module, resize_mode, resolution, a, b)


class ControlNetHook:
    """A :data:`SamplingHook` applying ControlNet units around each pipeline call."""

    def __init__(self, units: Sequence[ControlNetUnit], library: ControlNetLibrary, annotators: AnnotatorCache | None,
                 models: ControlNetCache, *, allow_pickle: bool = False) -> None:
        self.units = [u for u in units if u.is_active]
        self.library = library
        self.annotators = annotators
        self.models = models
        self.allow_pickle = allow_pickle
        self._prepared: dict[tuple[int, int], PreparedUnit] = {}
        self._maps: dict[tuple[int, int, int, int], torch.Tensor] = {}

    def __call__(self, ctx: "SamplingContext") -> contextlib.AbstractContextManager[None]:
        return self._applied(ctx)

    def _in_pass(self, unit: ControlNetUnit, ctx: "SamplingContext") -> bool:
        if ctx.task == "refiner":
            return False
        if ctx.task == "hires":
            return unit.hr_option != "Low res only"
        if ctx.task == "txt2img" and getattr(ctx.req, "enable_hr", False):
            return unit.hr_option != "High res only"
        return True

    def _prepared_unit(self, index: int, unit: ControlNetUnit, ctx: "SamplingContext", width: int,
                       height: int) -> tuple[tuple[int, int], PreparedUnit]:
        """The unit's detected map, made once per job (shuffle: once per seed) at the first pass's size."""
        seed = ctx.seeds[0] if ctx.seeds else 0
        key = (index, seed if find_preprocessor(unit.module).name == "shuffle" else 0)
        if key not in self._prepared:
            self._prepared[key] = prepare_unit(unit, index, ctx.req, width, height, self.annotators, seed)
        return key, self._prepared[key]

    def _map(self, key: tuple[int, int], prepared: PreparedUnit, width: int, height: int) -> torch.Tensor:
        map_key = (*key, width, height)
        if map_key not in self._maps:
            self._maps[map_key] = as_tensor(resize_to_target(prepared.detected, width, height, prepared.resize_mode))
        return self._maps[map_key]

    @contextlib.contextmanager
    def _applied(self, ctx: "SamplingContext") -> Iterator[None]:
        units = [(i, u) for i, u in enumerate(self.units) if self._in_pass(u, ctx)]
        if not units:
            yield
            return
        if ctx.model.family.architecture != "ldm-unet":
            raise ControlNetError(f"ControlNet works with SD 1.x, SD 2.x and SDXL models, not {ctx.model.family.label}")
        unet = ctx.pipe.unet
        width, height = target_size(ctx)
        controls: list[ActiveControl] = []
        for index, unit in units:
            entry = self.library.find(unit.model)
            net = self.models.get(entry, dict(unet.config), ctx.model.family.label, dtype=unet.dtype,
                                  device=unet.device, allow_pickle=self.allow_pickle)
            key, prepared = self._prepared_unit(index, unit, ctx, width, height)
            ctx.infotext_params[f"ControlNet {index}"] = unit_infotext(
                unit, module=find_preprocessor(unit.module).name, model_title=entry.title,
                processor_res=prepared.processor_res, threshold_a=prepared.threshold_a,
                threshold_b=prepared.threshold_b)
            forced_soft = ctx.task == "hires" and prepared.module in ("canny", "mlsd")
            controls.append(ActiveControl(
                net=net, weight=unit.weight, guidance_start=unit.guidance_start, guidance_end=unit.guidance_end,
                soft=unit.control_mode != "Balanced" or forced_soft,
                cfg_injection=unit.control_mode == "ControlNet is more important",
                image_for=lambda w, h, k=key, p=prepared: self._map(k, p, w, h)))
        injector = ControlInjector(controls, ctx.pipe.scheduler, len(ctx.prompts), int(ctx.model.vae_scale_factor))
        with injected(unet, injector):
            yield


def controlnet_hook(units: Sequence[ControlNetUnit], controlnet_dir: Path | Sequence[Path], *,
                    annotator_dir: Path | None = None, annotators: AnnotatorCache | None = None,
                    models: ControlNetCache | None = None, allow_pickle: bool = False) -> ControlNetHook:
    """The ControlNet :data:`SamplingHook` for ``units`` with models from ``controlnet_dir`` (one or several
    folders) and annotator weights from ``annotator_dir`` (default: ``<models>/annotators`` beside it).

    ``annotators`` / ``models`` are caches the caller keeps across jobs (new ones when omitted).
    """
    dirs = (Path(controlnet_dir),) if isinstance(controlnet_dir, (str, Path)) else tuple(Path(d) for d in controlnet_dir)
    if annotators is None:
        annotators = AnnotatorCache(Path(annotator_dir) if annotator_dir else dirs[0].parent / "annotators")
    return ControlNetHook(units, ControlNetLibrary(controlnet_dirs(dirs[0], dirs[1:])), annotators,
                          models or ControlNetCache(), allow_pickle=allow_pickle)


def detect_maps(images: Sequence[Image.Image], module: str, *, processor_res: int = 512, threshold_a: float = -1,
                threshold_b: float = -1, annotators: AnnotatorCache | None = None, seed: int = 0) -> list[Image.Image]:
    """The ``/controlnet/detect`` operation: each image's detected map at the processor resolution."""
    out: list[Image.Image] = []
    for image in images:
        array = hwc3(np.asarray(image.convert("RGBA")))
        detected = run_preprocessor(array, module, resolution=processor_res, threshold_a=threshold_a,
                                    threshold_b=threshold_b, annotators=annotators, seed=seed)
        out.append(Image.fromarray(detected))
    return out
