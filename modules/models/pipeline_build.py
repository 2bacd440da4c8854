"""Assemble diffusers pipelines from loaded components, driven by the family's model_index."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Mapping

from modules.models.families import ModelFamily

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

#: Pipeline arguments we never fill from model_index (no safety checker / watermark in a local studio).
FIXED_ARGUMENTS: Mapping[str, object] = {"add_watermarker": False, "requires_safety_checker": False}


def build_scheduler(config: Mapping[str, Any]) -> "SchedulerMixin":
    """Instantiate the scheduler class named by ``_class_name`` from its config."""
    import diffusers

    cls = getattr(diffusers, str(config.get("_class_name", "")), None)
    if cls is None:
        raise ValueError(f"unknown scheduler class '{config.get('_class_name')}'")
    return cls.from_config(dict(config))


def task_for(family: ModelFamily, variant: Mapping[str, object]) -> str:
    """Which of the family's pipelines a loaded model is served by: inpaint models -> "inpaint",
    refiners (no txt2img) -> "img2img", else "txt2img"."""
    if variant.get("inpaint"):
        return "inpaint"
    return "txt2img" if family.supports_txt2img else "img2img"


def _is_component_entry(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2


def assemble_pipeline(
    class_name: str, model_index: Mapping[str, Any], components: Mapping[str, Any]
) -> "DiffusionPipeline":
    """``cls(**components)`` plus the non-component options of model_index the class accepts."""
    import diffusers

    cls = getattr(diffusers, class_name)
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {}
    for name, param in params.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name in components:
            kwargs[name] = components[name]
        elif name in FIXED_ARGUMENTS:
            kwargs[name] = FIXED_ARGUMENTS[name]
        elif name in model_index and not _is_component_entry(model_index[name]):
            kwargs[name] = model_index[name]
        elif param.default is inspect.Parameter.empty:
            kwargs[name] = None  # optional components (safety_checker, feature_extractor, ...)
    return cls(**kwargs)


def pipeline_for_task(pipeline: "DiffusionPipeline", family: ModelFamily, task: str) -> "DiffusionPipeline":
    """The family's pipeline for ``task`` ("txt2img" | "img2img" | "inpaint") sharing ``pipeline``'s modules."""
    import diffusers

    if task not in family.pipelines:
        raise ValueError(f"{family.label} has no {task} pipeline")
    cls = getattr(diffusers, family.pipelines[task])
    if isinstance(pipeline, cls):
        return pipeline
    return cls.from_pipe(pipeline, torch_dtype=pipeline.dtype)  # keep fp16 models fp16
