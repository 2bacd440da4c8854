"""What a generation job returns, its infotext parameters, and how each finished image is recorded.

Shared by the txt2img and img2img runners: :func:`generation_params` writes the A1111 keys every
image has (in A1111's order, ``extra`` keys such as ``Denoising strength``, ``Hires upscale`` or
``Refiner`` after them), :func:`record_image` attaches the infotext, saves the image (A1111 layout
``outdir/YYYY-MM-DD/NNNNN-SEED.png``, or a fixed path for folder batches) and appends it to the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Protocol

from modules.generation.sampling.seeds import SeedPlan
from modules.images.infotext import build_infotext
from modules.images.saving import save_generated_image
from modules.version import VERSION

if TYPE_CHECKING:
    from PIL import Image

    from modules.generation.requests import GenerationRequest
    from modules.models.manager import ActiveModel


@dataclass
class GenerationResult:
    """What a generation job produced (images stay in memory; paths when saved).

    ``width``/``height`` are the processing size of the first pass (A1111's ``info.width``); the
    images themselves may be larger (hires fix, only-masked inpainting keeps the original size).
    """

    images: list["Image.Image"] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    paths: list[Path | None] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    subseeds: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    negative_prompts: list[str] = field(default_factory=list)
    seed_plan: SeedPlan | None = None
    width: int = 0
    height: int = 0
    sampler_name: str = ""
    schedule_label: str = ""
    model_name: str = ""
    model_hash: str | None = None
    interrupted: bool = False
    job_timestamp: str = ""
    seconds: float = 0.0
    denoising_strength: float | None = None
    clip_skip: int | None = None  # the clip skip used (None: the request's)
    #: what the request asked for that was changed or not applied (e.g. a size fitted to the model)
    warnings: list[str] = field(default_factory=list)
    memory_mode: str = ""              # the memory mode in force (modules/backends/memory.py)
    peak_memory_mb: float | None = None  # the job's peak memory (GPU allocator, or the process's RAM peak)


class ImageHooks(Protocol):
    """What sees each image of a job before and after it is saved (the scripts' ``postprocess_image`` and
    the ``before_image_saved``/``image_saved`` callbacks: :mod:`modules.scripts.running`)."""

    def postprocess_image(self, image: "Image.Image", *, seed: int, prompt: str,
                          params: dict[str, Any]) -> "Image.Image": ...

    def before_save(self, image: "Image.Image", infotext: str) -> str: ...

    def after_save(self, image: "Image.Image", infotext: str, path: Path | None) -> None: ...


@dataclass(frozen=True)
class OutputOptions:
    save: bool
    outdir: Path
    write_infotext: bool = True
    add_model_hash: bool = True
    add_model_name: bool = True
    add_version: bool = True
    image_hooks: ImageHooks | None = None


def generation_params(req: "GenerationRequest", *, seed: int, subseed: int, width: int, height: int,
                      sampler_name: str, schedule_label: str, active: "ActiveModel", output: OutputOptions,
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The infotext parameters of one image, in A1111 key names."""
    params: dict[str, Any] = {
        "Steps": req.steps,
        "Sampler": sampler_name,
        "Schedule type": schedule_label,
        "CFG scale": req.cfg_scale,
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": active.shorthash if output.add_model_hash else None,
        "Model": active.info.name_for_extra if output.add_model_name else None,
    }
    if req.subseed_strength > 0:
        params["Variation seed"] = subseed
        params["Variation seed strength"] = req.subseed_strength
    if req.seed_resize_from_w > 0 and req.seed_resize_from_h > 0:
        params["Seed resize from"] = f"{req.seed_resize_from_w}x{req.seed_resize_from_h}"
    if req.clip_skip > 1:
        params["Clip skip"] = req.clip_skip
    rng = getattr(req, "randn_source", None) or "CPU"
    if rng != "GPU":  # A1111 writes RNG only when it is not its default, GPU
        params["RNG"] = rng
    if active.model.family.id == "flux-dev":
        params["Distilled CFG Scale"] = req.distilled_cfg_scale
    params.update(extra or {})
    if output.add_version:
        params["Version"] = VERSION
    return params


def record_image(result: GenerationResult, image: "Image.Image", *, seed: int, subseed: int, prompt: str,
                 negative: str, params: Mapping[str, Any], output: OutputOptions,
                 save_as: Path | None = None) -> None:
    """Attach the infotext to ``image``, save it (to ``save_as`` when given) and add it to ``result``."""
    hooks = output.image_hooks
    if hooks is not None:
        params = dict(params)
        image = hooks.postprocess_image(image, seed=seed, prompt=prompt, params=params)
    infotext = build_infotext(prompt, negative, params)
    if hooks is not None:
        infotext = hooks.before_save(image, infotext)
    if output.write_infotext:
        image.info["parameters"] = infotext
    path: Path | None = None
    if save_as is not None:
        from modules.images.codec import png_info

        save_as.parent.mkdir(parents=True, exist_ok=True)
        image.save(save_as, format="PNG", pnginfo=png_info(infotext if output.write_infotext else None))
        path = save_as
    elif output.save:
        path = save_generated_image(image, outdir=output.outdir, seed=seed,
                                    infotext=infotext if output.write_infotext else "")
    if hooks is not None:
        hooks.after_save(image, infotext, path)
    result.images.append(image)
    result.infotexts.append(infotext)
    result.paths.append(path)
    result.seeds.append(seed)
    result.subseeds.append(subseed)
    result.prompts.append(prompt)
    result.negative_prompts.append(negative)
