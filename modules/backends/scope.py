"""A job's backend: the exported UNet put in the pipeline for the job, or a refusal that names the backend
that can run the request.

:class:`BackendCache` (one per studio, on the app context) keeps the compiled runtimes by export and
precision, so the export, the parity check and the compilation happen once per model and backend.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from modules.backends.registry import Backend, BackendError, get_backend

if TYPE_CHECKING:
    from modules.models.manager import ActiveModel

LORA_TAG = "<lora:"


def request_features(req: Any) -> set[str]:
    """The backend features a generation request needs (LoRA tags in its prompts, ControlNet units)."""
    needs: set[str] = set()
    prompts = " ".join(str(getattr(req, name, "") or "") for name in ("prompt", "negative_prompt", "hr_prompt",
                                                                      "hr_negative_prompt"))
    if LORA_TAG in prompts.lower() or "<lyco:" in prompts.lower():
        needs.add("lora")
    if any(getattr(unit, "enabled", True) for unit in getattr(req, "controlnet_units", None) or ()):
        needs.add("controlnet")
    return needs


def check_request(backend: Backend, req: Any) -> None:
    missing = sorted(request_features(req) - backend.supports)
    if missing:
        names = {"lora": "LoRA", "controlnet": "ControlNet"}
        what = " and ".join(names.get(m, m) for m in missing)
        raise BackendError(f"{what} runs on the PyTorch backend only (the {backend.label} graph has the model's "
                           "weights and inputs fixed at export): switch this model's backend to PyTorch in "
                           "Settings, or remove it from the request")


def check_model(backend: Backend, active: "ActiveModel") -> None:
    pipe = active.model.pipeline
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(pipe, "text_encoder_2", None) is not None or \
            getattr(unet.config, "addition_embed_type", None) is not None:
        raise BackendError(f"the {backend.label} backend runs SD 1.x and 2.x UNets; {active.model.family.label} "
                           "runs on the PyTorch backend")


class BackendCache:
    """Compiled runtimes by (export folder, backend, precision); exports under ``<cache>/backends``."""

    def __init__(self, cache_dir: Path) -> None:
        self.root = cache_dir / "backends"
        self._runtimes: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()

    def identity(self, active: "ActiveModel") -> str:
        if active.sha256:
            return active.sha256
        path = Path(active.info.path)
        stat = path.stat()
        return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def runtime_for(self, active: "ActiveModel", backend: Backend, precision: str = "f32") -> Any:
        from modules.backends.export import export_key, exported_unet
        from modules.backends.parity import check_parity
        from modules.backends.runtime_unet import RuntimeUNet, onnxruntime_runner, openvino_runner

        unet = active.model.pipeline.unet
        folder = self.root / export_key(self.identity(active), unet)
        key = (str(folder), backend.name, precision)
        with self._lock:
            runtime = self._runtimes.get(key)
            if runtime is not None:
                return runtime
            path = exported_unet(unet, folder)
            runner = openvino_runner(path, precision) if backend.name == "openvino" else onnxruntime_runner(path)
            runtime = RuntimeUNet(unet.config, runner, backend.label)
            parity = check_parity(unet, runtime, backend.name, precision, folder)
            if not parity.ok:
                raise BackendError(f"the {backend.label} ({precision}) export of {active.info.name} differs from "
                                   f"PyTorch by {parity.relative:.2e} (tolerance {parity.tolerance:.0e}): it is not "
                                   "used; pick the PyTorch backend for this model")
            self._runtimes[key] = runtime
            return runtime

    def forget(self) -> None:
        with self._lock:
            self._runtimes.clear()


@contextlib.contextmanager
def backend_scope(cache: BackendCache | None, active: "ActiveModel", name: str, req: Any,
                  precision: str = "f32") -> Iterator[Backend]:
    """Run the job's UNet on backend ``name`` inside the block (PyTorch: nothing changes)."""
    backend = get_backend(name)
    if backend.name == "torch" or cache is None:
        yield backend
        return
    reason = backend.missing()
    if reason:
        raise BackendError(reason)
    if precision not in backend.precisions:
        raise BackendError(f"the {backend.label} backend offers {', '.join(backend.precisions)}, not {precision}")
    check_request(backend, req)
    check_model(backend, active)
    runtime = cache.runtime_for(active, backend, precision)
    pipe = active.model.pipeline
    original = pipe.unet
    pipe.unet = runtime
    try:
        yield backend
    finally:
        pipe.unet = original
