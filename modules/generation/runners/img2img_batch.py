"""img2img over every image of a server-side folder as one job (A1111's img2img "Batch" tab).

Each image (and a mask of the same file stem from ``mask_dir``, else the request's ``mask``) goes
through :mod:`modules.generation.runners.img2img` with one seed plan for all files. With ``output_dir`` each
result is written as ``<output_dir>/<input stem>[-n].png`` (A1111's names, infotext in the PNG);
without, to the normal img2img outputs. Reads and writes local folders: for the local UI and
trusted callers only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from PIL import Image

from modules.generation.addons.hooks import SamplingHook
from modules.generation.fitting import fit_to_model
from modules.generation.runners.img2img import decode_request_image, load_inputs, new_result, run_batches, plan_img2img
from modules.generation.runners.refiner import RefinerSource
from modules.generation.results import GenerationResult, OutputOptions
from modules.generation.validation import InvalidRequestError
from modules.jobs.progress import JobControl

if TYPE_CHECKING:
    from modules.generation.requests import Img2ImgBatchRequest
    from modules.generation.prompts.styles import StyleStore
    from modules.images.upscalers import UpscalerSet
    from modules.models.manager import ActiveModel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def batch_files(folder: Path) -> list[Path]:
    """The image files of a batch input folder, sorted by name."""
    if not folder.is_dir():
        raise InvalidRequestError(f"input folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def run_img2img_batch(req: "Img2ImgBatchRequest", active: "ActiveModel", control: JobControl,
                      output: OutputOptions, styles: "StyleStore | None" = None, *,
                      hooks: Sequence[SamplingHook] = (), refiners: RefinerSource | None = None,
                      upscalers: "UpscalerSet | None" = None) -> GenerationResult:
    """img2img over every image in ``req.input_dir`` as one job (see module docstring).

    The processing size is the request's, else the first image's; ``upscalers`` is accepted for symmetry.
    """
    started = time.perf_counter()
    files = batch_files(Path(req.input_dir))
    if not files:
        raise InvalidRequestError(f"no images in {req.input_dir}")
    common_mask = decode_request_image(req.mask, "mask") if req.mask else None
    mask_dir = Path(req.mask_dir) if req.mask_dir else None
    out_dir = Path(req.output_dir) if req.output_dir else None
    first = _open(files[0])
    req, notes = fit_to_model(req, active.model)
    job = plan_img2img(req, active, styles, hooks, refiners, output, first.size,
                    common_mask is not None or mask_dir is not None)
    result = new_result(job)
    result.clip_skip, result.warnings[:0] = req.clip_skip, notes
    control.begin(len(files) * req.n_iter, job.total_steps, text=f"img2img batch of {len(files)}")
    for number, path in enumerate(files):
        if control.should_stop:
            result.interrupted = True
            break
        mask = common_mask
        if mask_dir is not None:
            candidates = [m for m in batch_files(mask_dir) if m.stem == path.stem]
            mask = _open(candidates[0]) if candidates else common_mask
        images, mask, protect = load_inputs(req, [_open(path)], mask, active.model.family.size_multiple)
        start = len(result.images)

        def save_path(index: int, stem: str = path.stem, start: int = start) -> Path | None:
            if out_dir is None:
                return None
            n = index - start
            return out_dir / (f"{stem}.png" if n == 0 else f"{stem}-{n}.png")

        job.inpaint = mask is not None or active.model.task == "inpaint"
        run_batches(job, images, mask, protect, control, result, job_offset=number * req.n_iter,
                    save_path=save_path)
        if result.interrupted:
            break
    control.step(job.total_steps)
    result.seconds = time.perf_counter() - started
    return result


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except OSError as exc:
        raise InvalidRequestError(f"cannot read image {path.name}: {exc}") from None
