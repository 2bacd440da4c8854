"""The backends, declared once: what each needs installed and which request features it can run."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

#: features a request may need that an exported graph cannot take without a re-export
FEATURES = ("lora", "controlnet", "embeddings")


@dataclass(frozen=True)
class Backend:
    name: str
    label: str
    needs: tuple[str, ...]          # importable modules
    supports: frozenset[str]        # of FEATURES
    precisions: tuple[str, ...] = ("f32",)

    def missing(self) -> str | None:
        """Why it cannot run here (a module not installed), or None."""
        for module in self.needs:
            if importlib.util.find_spec(module) is None:
                return f"the {self.label} backend needs the '{module}' package (pip install {module})"
        return None


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", "PyTorch", ("torch",), frozenset(FEATURES)),
    # an exported UNet has its weights baked in (no LoRA merge) and no residual inputs (no ControlNet);
    # textual-inversion embeddings change only the prompt embeddings, which stay in PyTorch
    "onnx": Backend("onnx", "ONNX Runtime", ("onnxruntime", "onnx"), frozenset({"embeddings"})),
    "openvino": Backend("openvino", "OpenVINO", ("openvino", "onnx"), frozenset({"embeddings"}),
                        precisions=("f32", "bf16")),
}


class BackendError(ValueError):
    """A backend that cannot run this request or model; the message names what can."""


def get_backend(name: str) -> Backend:
    backend = BACKENDS.get((name or "torch").strip().lower())
    if backend is None:
        raise BackendError(f"unknown backend {name!r}; one of: {', '.join(BACKENDS)}")
    return backend
