"""img2img over many images as one job (A1111's img2img "Batch" tab): uploaded images or a server folder.

The inputs come from :mod:`modules.generation.batch_inputs` (folders only under the allowed roots). Each
image (with a mask of the same file stem from ``mask_dir``, else the request's ``mask``; with
``use_png_info`` its own prompts, seed, CFG scale, sampler and steps) goes through
:mod:`modules.generation.runners.img2img`, with one seed plan for all images unless an image's PNG info
sets its seed. With ``output_dir`` each result is written as ``<output_dir>/<input stem>[-n].png``
(A1111's names, infotext in the PNG); without, to the normal img2img outputs.

An image that cannot be used (unreadable, an empty mask, a PNG info the model cannot run) is recorded as
failed with its reason and the batch goes on; the result's :class:`BatchSummary` says what was done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pydantic import ValidationError

from modules.generation.addons.hooks import SamplingHook
from modules.generation.batch_inputs import batch_items, check_folders, mask_for, png_info_changes
from modules.generation.fitting import fit_to_model
from modules.generation.runners.img2img import Img2ImgPlan, decode_request_image, load_inputs, new_result, run_batches, plan_img2img
from modules.generation.runners.refiner import RefinerSource
from modules.generation.results import GenerationResult, OutputOptions
from modules.generation.sampling.samplers import SamplerError
from modules.generation.validation import InvalidRequestError
from modules.jobs.batch_summary import BatchSummary
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.requests import Img2ImgBatchRequest
    from modules.generation.prompts.styles import StyleStore
    from modules.images.upscalers import UpscalerSet
    from modules.models.manager import ActiveModel

#: what makes one image of the batch fail (the batch goes on); anything else stops the job
ITEM_ERRORS = (InvalidRequestError, SamplerError, ValidationError)


@dataclass
class BatchResult(GenerationResult):
    """A generation result with the batch's summary (done, failed and why)."""

    batch: BatchSummary = field(default_factory=BatchSummary)


def run_img2img_batch(req: "Img2ImgBatchRequest", active: "ActiveModel", control: JobControl,
                      output: OutputOptions, styles: "StyleStore | None" = None, *,
                      hooks: Sequence[SamplingHook] = (), refiners: RefinerSource | None = None,
                      upscalers: "UpscalerSet | None" = None, roots: Sequence[Path] = ()) -> BatchResult:
    """img2img over every image of the batch (see module docstring); ``roots``: the folders its paths may
    name (:func:`modules.folder_access.roots_of`). The processing size is the request's, else the first
    image's; ``upscalers`` is accepted for symmetry."""
    started = time.perf_counter()
    folders = check_folders(req, roots, create_output=True)
    items = batch_items(req, folders, roots)
    common_mask = decode_request_image(req.mask, "mask") if req.mask else None
    req, notes = fit_to_model(req, active.model)
    summary = BatchSummary(total=len(items))
    control.begin(len(items) * req.n_iter, max(req.steps, 1), text=f"img2img batch of {len(items)}")
    base: Img2ImgPlan | None = None
    result: BatchResult | None = None
    for number, item in enumerate(items):
        if control.should_stop:
            summary.interrupted = True
            break
        control.progress.text = f"img2img batch: {number + 1}/{len(items)} · {item.name}"
        try:
            image = item.load()
            mask = mask_for(item, folders, roots) if folders.mask_dir is not None else None
            mask = mask if mask is not None else common_mask
            changes = png_info_changes(image, req)
            item_req = type(req).model_validate(req.model_dump() | changes) if changes else req
            has_mask = mask is not None
            if base is None:
                base = plan_img2img(req, active, styles, hooks, refiners, output, image.size, has_mask)
                control.progress.total_steps = base.total_steps
            job = (plan_img2img(item_req, active, styles, hooks, refiners, output, image.size, has_mask)
                   if changes else base)
            if result is None:
                result = BatchResult(**vars(new_result(job)), batch=summary)
            images, mask, protect = load_inputs(item_req, [image], mask, active.model.family.size_multiple)
            job.inpaint = mask is not None or active.model.task == "inpaint"
            start = len(result.images)
            run_batches(job, images, mask, protect, control, result, job_offset=number * req.n_iter,
                        save_path=_namer(folders.output_dir, item.stem, start))
        except ITEM_ERRORS as exc:
            summary.fail(item.name, _reason(exc))
            continue
        if result.interrupted:
            summary.interrupted = True
            if len(result.images) > start:
                summary.done += 1
            break
        summary.done += 1
    if result is None:  # nothing could be planned: every image failed (or the job stopped first)
        if not summary.interrupted:
            raise InvalidRequestError(f"no image of the batch could be used: {summary.text()}")
        result = BatchResult(batch=summary, interrupted=True)
    result.interrupted = summary.interrupted
    result.clip_skip, result.warnings[:0] = req.clip_skip, notes
    result.warnings.extend(f"{name}: {reason}" for name, reason in summary.failed)
    control.step(control.progress.total_steps)
    result.seconds = time.perf_counter() - started
    return result


def _namer(out_dir: Path | None, stem: str, start: int) -> Any:
    """A1111's batch output names: ``<stem>.png``, then ``<stem>-1.png``, ... (None: the normal outputs)."""
    if out_dir is None:
        return None

    def save_path(index: int) -> Path:
        n = index - start
        return out_dir / (f"{stem}.png" if n == 0 else f"{stem}-{n}.png")

    return save_path


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"its PNG info sets {where or 'a value'} out of range: {first.get('msg', 'invalid')}"
    return str(exc)
