"""INT8 classifiers: ONNX export of a float classifier, dynamic INT8 quantization (onnxruntime), and the
agreement check that decides whether the INT8 model may be used.

Exports are cached by the weights' hash under ``<data dir>/classifier-onnx/<model_id>/`` (``model.onnx``,
``model.int8.onnx`` and ``agreement.json``, the last check's figures). The INT8 model is offered for
Classify only when that record says the check passed: top-1 agreement with the float model on the user's
own images at or above the threshold (97% by default). A changed model has another hash, so it needs a new
check.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from modules.atomic_files import write_bytes_atomic
from modules.understanding.image_models import ImageModelError, label_groups, top1_keys

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from modules.app_context import AppContext
    from modules.understanding.image_models import ImageModel

EXPORT_ROOT = "classifier-onnx"
FLOAT_ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
RECORD = "agreement.json"
DEFAULT_THRESHOLD = 0.97
#: the lane slot an INT8 session is held in
INT8_SLOT = "image_model_int8"


class Int8Refused(ImageModelError):
    """The INT8 model may not be used (no check yet, or the check failed); the message gives the figure."""


@dataclass(frozen=True)
class AgreementRecord:
    """What one agreement check measured."""

    model_id: str
    images: int
    agreed: int
    agreement: float          # agreed / images
    threshold: float
    passed: bool
    float_seconds: float      # the float (torch) model over all the images
    int8_seconds: float       # the INT8 ONNX model over the same images
    speedup: float            # float_seconds / int8_seconds
    float_mb: float
    int8_mb: float
    source: str               # "gallery" or the folder as shown to the user
    checked_at: float

    def summary(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return (f"INT8 top-1 agreement {self.agreement:.1%} on {self.images} images ({verdict}, needs "
                f"{self.threshold:.0%}); {self.speedup:.2f}x the float model's speed; {self.int8_mb:.1f} MB instead "
                f"of {self.float_mb:.1f} MB")


def export_dir(ctx: "AppContext", model_id: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-@" else "_" for c in model_id)
    return ctx.paths.data_dir / EXPORT_ROOT / safe


def read_record(ctx: "AppContext", model_id: str) -> AgreementRecord | None:
    try:
        data = json.loads((export_dir(ctx, model_id) / RECORD).read_text(encoding="utf-8"))
        return AgreementRecord(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_record(folder: Path, record: AgreementRecord) -> None:
    write_bytes_atomic(folder / RECORD, json.dumps(asdict(record), indent=2).encode("utf-8"))


def require_passed(ctx: "AppContext", model_id: str) -> AgreementRecord:
    """The passed record of ``model_id`` with its INT8 file present, else Int8Refused saying why."""
    record = read_record(ctx, model_id)
    name = model_id.partition("@")[0]
    if record is None:
        raise Int8Refused(f"{name} has no INT8 model yet: run the INT8 agreement check on your own images first "
                          f"(Classify → INT8, or the job kind classify_int8_check)")
    if not record.passed:
        raise Int8Refused(f"the INT8 model of {name} is not offered: {record.summary()}")
    if not (export_dir(ctx, model_id) / INT8_ONNX).is_file():
        raise Int8Refused(f"the INT8 export of {name} is missing from the data dir: run the agreement check again")
    return record


def export_onnx(model: "ImageModel", path: Path) -> Path:
    """The float model as ONNX (``pixel_values`` → ``logits``, any batch size), written atomically."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: Any) -> Any:
            return self.inner(pixel_values=pixel_values).logits

    height, width = model.image_size
    sample = torch.zeros(2, 3, height, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with model.lock:
        try:
            _export(Logits(model.model.to("cpu")).eval(), sample, temporary)
            os.replace(temporary, path)
        except Exception as exc:  # noqa: BLE001 - an architecture the exporter cannot trace
            temporary.unlink(missing_ok=True)
            raise ImageModelError(f"{model.name} could not be exported to ONNX: "
                                  f"{str(exc).splitlines()[0][:300]}") from None
        finally:
            model.model.to(model.device)
    return path


def _export(wrapped: Any, sample: Any, temporary: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's warnings about Python-side checks of the input size
        torch.onnx.export(wrapped, (sample,), str(temporary), input_names=["pixel_values"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})


def quantize(src: Path, dst: Path) -> Path:
    """Dynamic INT8 quantization of the weights (activations quantized at run time), written atomically."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    temporary = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        quantize_dynamic(str(src), str(temporary), weight_type=QuantType.QInt8)
        os.replace(temporary, dst)
    except Exception as exc:  # noqa: BLE001
        temporary.unlink(missing_ok=True)
        raise ImageModelError(f"INT8 quantization failed: {str(exc).splitlines()[0][:300]}") from None
    return dst


def ensure_exports(model: "ImageModel", folder: Path) -> tuple[Path, Path]:
    """(float ONNX, INT8 ONNX) of ``model`` in its export folder, made once (cached by the model's hash)."""
    float_path, int8_path = folder / FLOAT_ONNX, folder / INT8_ONNX
    if not float_path.is_file():
        export_onnx(model, float_path)
    if not int8_path.is_file():
        quantize(float_path, int8_path)
    return float_path, int8_path


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


@dataclass(eq=False)
class OnnxClassifier:
    """An ONNX classifier with the float model's processor and labels (same ``logits`` call as ImageModel)."""

    model_id: str
    labels: list[str]
    processor: Any
    session: Any
    lock: threading.Lock

    @property
    def groups(self) -> dict[str, list[int]] | None:
        return label_groups(self.labels)

    def logits(self, images: Sequence["Image.Image"], batch: int = 8) -> "np.ndarray":
        import numpy as np

        rows = []
        with self.lock:
            for start in range(0, len(images), max(1, batch)):
                chunk = [im.convert("RGB") for im in images[start:start + max(1, batch)]]
                pixels = self.processor(images=chunk, return_tensors="np").pixel_values.astype(np.float32)
                rows.append(self.session.run(["logits"], {"pixel_values": pixels})[0])
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), np.float32)


def load_int8(ctx: "AppContext", folder: Path, model_id: str) -> OnnxClassifier:
    """The INT8 classifier of a model whose check passed (Int8Refused otherwise); held in a model slot."""
    require_passed(ctx, model_id)
    slots = getattr(getattr(ctx, "models", None), "slots", None)
    held = slots.slot(INT8_SLOT) if slots is not None else None
    if isinstance(held, OnnxClassifier) and held.model_id == model_id:
        return held
    from transformers import AutoConfig, AutoImageProcessor

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    labels = [str(config.id2label.get(i, config.id2label.get(str(i), f"LABEL_{i}"))) for i in range(config.num_labels)]
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    path = export_dir(ctx, model_id) / INT8_ONNX
    runner = OnnxClassifier(model_id=model_id, labels=labels, processor=processor, session=session(path),
                            lock=threading.Lock())
    if slots is not None:
        slots.put(INT8_SLOT, runner, size=path.stat().st_size)
    return runner


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """The best of ``repeats`` timings of ``fn`` (seconds; the best is the least disturbed by a busy machine)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def agreement(float_logits: "np.ndarray", int8_logits: "np.ndarray", labels: Sequence[str]) -> int:
    """How many images get the same top-1 prediction (grouped: every group's) from both models."""
    groups = label_groups(labels)
    return sum(a == b for a, b in zip(top1_keys(float_logits, labels, groups), top1_keys(int8_logits, labels, groups)))


def check_agreement(ctx: "AppContext", model: "ImageModel", images: Sequence["Image.Image"], *, source: str,
                    threshold: float = DEFAULT_THRESHOLD, batch: int = 8, repeats: int = 2,
                    on_step: Callable[[str], None] | None = None) -> AgreementRecord:
    """Export and quantize ``model`` (cached), compare INT8 with float on ``images`` (top-1 agreement), time
    both side by side (best of ``repeats`` over the same images), and record the figures."""
    step = on_step or (lambda text: None)
    folder = export_dir(ctx, model.model_id)
    step("exporting to ONNX and quantizing to INT8")
    float_path, int8_path = ensure_exports(model, folder)
    runner = OnnxClassifier(model_id=model.model_id, labels=model.labels, processor=model.processor,
                            session=session(int8_path), lock=threading.Lock())
    step("comparing INT8 with float")
    float_logits = model.logits(images, batch)
    int8_logits = runner.logits(images, batch)
    agreed = agreement(float_logits, int8_logits, model.labels)
    step("timing float and INT8 side by side")
    float_s = timed(lambda: model.logits(images, batch), repeats)
    int8_s = timed(lambda: runner.logits(images, batch), repeats)
    share = agreed / len(images) if images else 0.0
    record = AgreementRecord(model_id=model.model_id, images=len(images), agreed=agreed, agreement=share,
                             threshold=threshold, passed=bool(images) and share >= threshold,
                             float_seconds=float_s, int8_seconds=int8_s, speedup=float_s / max(int8_s, 1e-9),
                             float_mb=float_path.stat().st_size / 2**20, int8_mb=int8_path.stat().st_size / 2**20,
                             source=source, checked_at=time.time())
    write_record(folder, record)
    return record
