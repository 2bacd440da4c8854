"""ControlNet preprocessors ("modules"): sd-webui-controlnet names, offline weights, A1111 resize rules.

Weight-free modules are plain OpenCV/numpy, written after sd-webui-controlnet's ``processor.py`` (and the
same algorithms in controlnet-aux): ``none``, ``canny``, ``invert``, ``threshold``, ``scribble_xdog``,
``lineart_standard``, ``shuffle`` (seeded, so reproducible), ``blur_gaussian``, ``tile_resample``,
``color``. They always work offline (and do not import controlnet-aux, whose package import costs ~8 s).
(``recolor_*`` is not offered: it needs the extension's post-processing of the output image.)

Modules with annotator networks use controlnet-aux 0.0.10 detectors loaded with
``Detector.from_pretrained(<models/annotators>)``, i.e. the files of the ``lllyasviel/Annotators`` repository
placed flat in ``models/annotators/``; every one of these was checked to construct and run offline from
such a folder (random weights in the expected file format, network blocked). A missing file is a clear
error naming the file(s) and the folder. LeReS (argv parsing inside), SAM, DWpose (ONNX/mmpose) and
mediapipe are not offered.

Control maps are resized to the generation size as sd-webui-controlnet does: "Just Resize" stretches,
"Crop and Resize" covers and centre-crops, "Resize and Fill" fits and pads with the median border colour;
two-colour (edge) maps are re-binarised with Otsu after resizing, maps with few colours use nearest.
Pixel perfect picks the processor resolution from the target size (``pixel_perfect_resolution``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modules.generation.validation import InvalidRequestError

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")


class PreprocessorError(InvalidRequestError):
    """A preprocessor that cannot run (unknown module, missing annotator file); message for the user."""


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    min: float
    max: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: Callable[..., np.ndarray]          # run(image HWC uint8, res, a, b, annotators, seed) -> HWC uint8
    files: tuple[str, ...] = ()             # annotator weights needed in models/annotators
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    uses_resolution: bool = True

    @property
    def model_free(self) -> bool:
        return not self.files


# --------------------------------------------------------------------------- numpy helpers


def hwc3(x: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 from gray / RGB / RGBA (alpha composited on white)."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        x = np.clip(x, 0, 255).astype(np.uint8)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 1:
        return np.concatenate([x, x, x], axis=2)
    if x.shape[2] == 4:
        color, alpha = x[:, :, :3].astype(np.float32), x[:, :, 3:4].astype(np.float32) / 255.0
        return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    return x[:, :, :3]


def _pad64(x: int) -> int:
    return int(np.ceil(float(x) / 64.0) * 64 - x)


def resize_with_pad(img: np.ndarray, resolution: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """sd-webui-controlnet ``resize_image_with_pad``: short side to ``resolution``, edge-pad to x64."""
    import cv2

    img = hwc3(img)
    h_raw, w_raw = img.shape[:2]
    k = float(resolution) / float(min(h_raw, w_raw))
    h, w = max(1, int(np.round(h_raw * k))), max(1, int(np.round(w_raw * k)))
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    padded = np.pad(img, [[0, _pad64(h)], [0, _pad64(w)], [0, 0]], mode="edge")
    return padded, lambda x: np.ascontiguousarray(x[:h, :w])


def _canny(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    return hwc3(unpad(cv2.Canny(padded, int(a), int(b))))


def _invert(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    return 255 - hwc3(img)


def _threshold(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    padded, unpad = resize_with_pad(img, res)
    out = np.zeros_like(padded)
    out[np.min(padded, axis=2) > a] = 255
    return unpad(out)


def _scribble_xdog(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    g1 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    out = np.zeros_like(padded)
    out[2 * (255 - dog) > a] = 255
    return unpad(out)


def _lineart_standard(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    x = padded.astype(np.float32)
    intensity = np.min(cv2.GaussianBlur(x, (0, 0), 6.0) - x, axis=2).clip(0, 255)
    strong = intensity[intensity > 8]
    intensity /= max(16.0, float(np.median(strong)) if strong.size else 16.0)
    return hwc3(unpad((intensity * 127).clip(0, 255).astype(np.uint8)))


def _noise_disk(rng: np.random.Generator, h: int, w: int, f: int) -> np.ndarray:
    import cv2

    noise = rng.uniform(0, 1, size=((h // f) + 2, (w // f) + 2))
    noise = cv2.resize(noise, (w + 2 * f, h + 2 * f), interpolation=cv2.INTER_CUBIC)[f:f + h, f:f + w]
    noise -= noise.min()
    return noise / max(float(noise.max()), 1e-8)


def _shuffle(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    img = unpad(padded)
    h, w = img.shape[:2]
    rng = np.random.default_rng(seed)
    f = 256  # the extension's ContentShuffleDetector default
    flow = np.stack([_noise_disk(rng, h, w, f) * (w - 1), _noise_disk(rng, h, w, f) * (h - 1)], axis=2)
    return cv2.remap(img, flow.astype(np.float32), None, cv2.INTER_LINEAR)


def _blur(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    return cv2.GaussianBlur(unpad(padded), (0, 0), float(a))


def _tile_resample(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    img = hwc3(img)
    if a < 1.1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, int(w / a)), max(1, int(h / a))), interpolation=cv2.INTER_AREA)


def _color(img: np.ndarray, res: int, a: float, b: float, annotators: Any, seed: int) -> np.ndarray:
    import cv2

    padded, unpad = resize_with_pad(img, res)
    img = unpad(padded)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // 64), max(1, h // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


# --------------------------------------------------------------------------- annotator networks


@dataclass
class AnnotatorCache:
    """Loaded controlnet-aux detectors for one annotator folder (owned by the caller)."""

    folder: Path
    device: str = "cpu"
    _loaded: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def missing(self, files: tuple[str, ...]) -> list[str]:
        return [name for name in files if not (self.folder / name).is_file()]

    def detector(self, class_name: str, files: tuple[str, ...], module: str) -> Any:
        missing = self.missing(files)
        if missing:
            raise PreprocessorError(
                f"preprocessor '{module}' needs {', '.join(missing)} in {self.folder} (the files of the "
                f"lllyasviel/Annotators repository); put them there or pick a weight-free module such as canny")
        with self._lock:
            if class_name not in self._loaded:
                import importlib

                package = {"HEDdetector": "hed", "PidiNetDetector": "pidi", "MLSDdetector": "mlsd",
                           "LineartDetector": "lineart", "LineartAnimeDetector": "lineart_anime",
                           "NormalBaeDetector": "normalbae", "MidasDetector": "midas", "ZoeDetector": "zoe",
                           "OpenposeDetector": "open_pose"}[class_name]
                cls = getattr(importlib.import_module(f"controlnet_aux.{package}"), class_name)
                try:
                    self._loaded[class_name] = cls.from_pretrained(str(self.folder)).to(self.device)
                except Exception as exc:  # noqa: BLE001 - a broken weights file becomes one clear message
                    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise PreprocessorError(f"preprocessor '{module}': cannot load its weights from "
                                            f"{self.folder} ({reason[:200]})") from None
            return self._loaded[class_name]


def _aux(class_name: str, files: tuple[str, ...], **fixed: Any) -> Callable[..., np.ndarray]:
    def run(img: np.ndarray, res: int, a: float, b: float, annotators: AnnotatorCache | None, seed: int,
            module: str = "") -> np.ndarray:
        if annotators is None:
            raise PreprocessorError(f"preprocessor '{module}' needs annotator weights, and no folder is configured")
        kwargs = dict(fixed)
        if class_name == "MLSDdetector":
            kwargs.update(thr_v=a, thr_d=b)
        detector = annotators.detector(class_name, files, module)
        out = detector(hwc3(img), detect_resolution=res, image_resolution=res, output_type="np", **kwargs)
        return hwc3(np.asarray(out))
    return run


_RES = Slider("Preprocessor Resolution", 512, 64, 2048)
_HED = ("ControlNetHED.pth",)
_PIDI = ("table5_pidinet.pth",)
_POSE = ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")
_LINEART = ("sk_model.pth", "sk_model2.pth")

PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (
    Preprocessor("none", lambda img, *_: hwc3(img), uses_resolution=False),
    Preprocessor("canny", _canny, threshold_a=Slider("Canny Low Threshold", 100, 1, 255),
                 threshold_b=Slider("Canny High Threshold", 200, 1, 255)),
    Preprocessor("invert", _invert, uses_resolution=False),
    Preprocessor("threshold", _threshold, threshold_a=Slider("Binarization Threshold", 127, 0, 255)),
    Preprocessor("scribble_xdog", _scribble_xdog, threshold_a=Slider("XDoG Threshold", 32, 1, 64)),
    Preprocessor("lineart_standard", _lineart_standard),
    Preprocessor("shuffle", _shuffle),
    Preprocessor("blur_gaussian", _blur, threshold_a=Slider("Sigma", 9.0, 0.01, 64.0, 0.01)),
    Preprocessor("tile_resample", _tile_resample, threshold_a=Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01),
                 uses_resolution=False),
    Preprocessor("color", _color),
    Preprocessor("softedge_hed", _aux("HEDdetector", _HED), files=_HED),
    Preprocessor("softedge_hedsafe", _aux("HEDdetector", _HED, safe=True), files=_HED),
    Preprocessor("scribble_hed", _aux("HEDdetector", _HED, scribble=True), files=_HED),
    Preprocessor("softedge_pidinet", _aux("PidiNetDetector", _PIDI), files=_PIDI),
    Preprocessor("softedge_pidisafe", _aux("PidiNetDetector", _PIDI, safe=True), files=_PIDI),
    Preprocessor("scribble_pidinet", _aux("PidiNetDetector", _PIDI, scribble=True), files=_PIDI),
    Preprocessor("mlsd", _aux("MLSDdetector", ("mlsd_large_512_fp32.pth",)), files=("mlsd_large_512_fp32.pth",),
                 threshold_a=Slider("MLSD Value Threshold", 0.1, 0.01, 2.0, 0.01),
                 threshold_b=Slider("MLSD Distance Threshold", 0.1, 0.01, 20.0, 0.01)),
    Preprocessor("lineart_realistic", _aux("LineartDetector", _LINEART), files=_LINEART),
    Preprocessor("lineart_coarse", _aux("LineartDetector", _LINEART, coarse=True), files=_LINEART),
    Preprocessor("lineart_anime", _aux("LineartAnimeDetector", ("netG.pth",)), files=("netG.pth",)),
    Preprocessor("normal_bae", _aux("NormalBaeDetector", ("scannet.pt",)), files=("scannet.pt",)),
    Preprocessor("depth_midas", _aux("MidasDetector", ("dpt_hybrid-midas-501f0c75.pt",)),
                 files=("dpt_hybrid-midas-501f0c75.pt",)),
    Preprocessor("depth_zoe", _aux("ZoeDetector", ("ZoeD_M12_N.pt",)), files=("ZoeD_M12_N.pt",)),
    Preprocessor("openpose", _aux("OpenposeDetector", _POSE), files=_POSE),
    Preprocessor("openpose_face", _aux("OpenposeDetector", _POSE, include_face=True), files=_POSE),
    Preprocessor("openpose_faceonly", _aux("OpenposeDetector", _POSE, include_body=False, include_face=True),
                 files=_POSE),
    Preprocessor("openpose_hand", _aux("OpenposeDetector", _POSE, include_hand=True), files=_POSE),
    Preprocessor("openpose_full", _aux("OpenposeDetector", _POSE, include_hand=True, include_face=True), files=_POSE),
)}

#: older sd-webui-controlnet names (``preprocessor_aliases``) and display names
ALIASES: dict[str, str] = {
    "invert (from white bg & black line)": "invert", "lineart_standard (from white bg & black line)": "lineart_standard",
    "hed": "softedge_hed", "hed_safe": "softedge_hedsafe", "pidinet": "softedge_pidinet",
    "pidinet_safe": "softedge_pidisafe", "pidinet_scribble": "scribble_pidinet", "fake_scribble": "scribble_hed",
    "lineart": "lineart_realistic", "normal_bae": "normal_bae", "depth": "depth_midas", "binary": "threshold",
    "t2ia_color_grid": "color", "color_grid": "color", "none": "none", "None": "none",
}


#: the extension's UI labels (``module_list?alias_names=true``) where they differ from the names
LABELS: dict[str, str] = {"invert": "invert (from white bg & black line)", "color": "t2ia_color_grid",
                          "lineart_standard": "lineart_standard (from white bg & black line)"}


def find_preprocessor(name: str | None) -> Preprocessor:
    key = (name or "none").strip()
    key = ALIASES.get(key, ALIASES.get(key.lower(), key.lower()))
    found = PREPROCESSORS.get(key)
    if found is None:
        raise PreprocessorError(f"unknown ControlNet preprocessor '{name}'; available: {', '.join(PREPROCESSORS)}")
    return found


def available_modules(annotators: AnnotatorCache | None) -> tuple[list[str], dict[str, list[str]]]:
    """(modules usable now, {module: missing annotator files} for the others)."""
    usable: list[str] = []
    unavailable: dict[str, list[str]] = {}
    for name, pre in PREPROCESSORS.items():
        missing = [] if not pre.files else list(pre.files) if annotators is None else annotators.missing(pre.files)
        if missing:
            unavailable[name] = missing
        else:
            usable.append(name)
    return usable, unavailable


def module_detail(pre: Preprocessor) -> dict[str, Any]:
    """sd-webui-controlnet ``module_detail`` entry: model_free and the slider definitions."""
    sliders: list[dict[str, Any]] = [vars(_RES)] if pre.uses_resolution else []
    sliders += [vars(s) for s in (pre.threshold_a, pre.threshold_b) if s is not None]
    return {"model_free": pre.model_free, "sliders": sliders}


# --------------------------------------------------------------------------- resizing


def pixel_perfect_resolution(image: np.ndarray, target_h: int, target_w: int, resize_mode: str) -> int:
    """sd-webui-controlnet ``pixel_perfect_resolution``."""
    raw_h, raw_w = image.shape[:2]
    k0, k1 = float(target_h) / raw_h, float(target_w) / raw_w
    k = min(k0, k1) if resize_mode == "Resize and Fill" else max(k0, k1)
    return int(np.round(k * float(min(raw_h, raw_w))))


def _quality_resize(x: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    if x.shape[0] == h and x.shape[1] == w:
        return x
    colours = len(np.unique(x.reshape(-1, x.shape[2]), axis=0))
    binary = colours == 2 and x.min() < 16 and x.max() > 240
    if 2 < colours < 200:
        interpolation = cv2.INTER_NEAREST
    elif w * h < x.shape[0] * x.shape[1]:
        interpolation = cv2.INTER_AREA
    else:
        interpolation = cv2.INTER_CUBIC
    y = cv2.resize(x, (w, h), interpolation=interpolation)
    if binary:
        gray = np.mean(y.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
        _, gray = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        y = hwc3(gray)
    return hwc3(y)


def resize_to_target(detected: np.ndarray, width: int, height: int, resize_mode: str) -> np.ndarray:
    """A control map at ``width x height`` by sd-webui-controlnet's resize modes (``detectmap_proc``)."""
    detected = hwc3(detected)
    if resize_mode == "Just Resize":
        return _quality_resize(detected, width, height)
    old_h, old_w = detected.shape[:2]
    k0, k1 = float(height) / old_h, float(width) / old_w
    if resize_mode == "Resize and Fill":
        k = min(k0, k1)
        border = np.concatenate([detected[0], detected[-1], detected[:, 0], detected[:, -1]], axis=0)
        canvas = np.tile(np.median(border, axis=0).astype(np.uint8)[None, None], [height, width, 1])
        inner = _quality_resize(detected, max(1, int(np.round(old_w * k))), max(1, int(np.round(old_h * k))))
        ih, iw = inner.shape[:2]
        top, left = max(0, (height - ih) // 2), max(0, (width - iw) // 2)
        canvas[top:top + ih, left:left + iw] = inner[: height - top, : width - left]
        return canvas
    k = max(k0, k1)
    inner = _quality_resize(detected, max(1, int(np.round(old_w * k))), max(1, int(np.round(old_h * k))))
    ih, iw = inner.shape[:2]
    top, left = max(0, (ih - height) // 2), max(0, (iw - width) // 2)
    return np.ascontiguousarray(inner[top:top + height, left:left + width])


def run_preprocessor(image: np.ndarray, module: str, *, resolution: int, threshold_a: float | None = None,
                     threshold_b: float | None = None, annotators: AnnotatorCache | None = None,
                     seed: int = 0) -> np.ndarray:
    """Detected map (HWC uint8) at about ``resolution`` (short side); thresholds None/<0 take the defaults."""
    pre = find_preprocessor(module)
    a = pre.threshold_a.value if pre.threshold_a and (threshold_a is None or threshold_a < 0) else threshold_a
    b = pre.threshold_b.value if pre.threshold_b and (threshold_b is None or threshold_b < 0) else threshold_b
    resolution = int(resolution) if resolution and resolution > 0 else 512
    if pre.files:
        return pre.run(image, resolution, float(a or 0), float(b or 0), annotators, seed, module=pre.name)
    return pre.run(image, resolution, float(a or 0), float(b or 0), annotators, seed)
