"""The inputs of an img2img batch: its folders checked against the allowed roots, its images (uploaded
or from a folder) as named items, each item's mask, and what its PNG info changes in the request.

Light (PIL and pydantic only): the precheck runs it before queueing; the runner
(:mod:`modules.generation.runners.img2img_batch`) runs it again in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from PIL import Image

from modules.folder_access import FolderNotAllowed, image_files, resolve_folder, roots_of
from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.generation.requests import Img2ImgBatchRequest


@dataclass(frozen=True)
class BatchFolders:
    """The real paths of a batch's folders (None: not given)."""

    input_dir: Path | None
    output_dir: Path | None
    mask_dir: Path | None


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: its name (file name, for outputs and messages) and how to read it."""

    name: str
    load: Callable[[], Image.Image]

    @property
    def stem(self) -> str:
        return Path(self.name).stem or "image"


def check_folders(req: "Img2ImgBatchRequest", roots: Sequence[Path], *, create_output: bool) -> BatchFolders:
    """The batch's folders resolved under ``roots``; InvalidRequestError with the reason otherwise."""
    try:
        input_dir = resolve_folder(req.input_dir, roots, what="input folder") if req.input_dir else None
        mask_dir = resolve_folder(req.mask_dir, roots, what="mask folder") if req.mask_dir else None
        output_dir = (resolve_folder(req.output_dir, roots, what="output folder", must_exist=False,
                                     create=create_output) if req.output_dir else None)
    except FolderNotAllowed as exc:
        raise InvalidRequestError(str(exc)) from None
    if output_dir is not None and output_dir in (input_dir, mask_dir):
        raise InvalidRequestError("the output folder must differ from the input and mask folders")
    return BatchFolders(input_dir, output_dir, mask_dir)


def batch_items(req: "Img2ImgBatchRequest", folders: BatchFolders, roots: Sequence[Path]) -> list[BatchItem]:
    """The batch's images in order: the uploaded ones, else the input folder's (sorted by name)."""
    if folders.input_dir is not None:
        files = image_files(folders.input_dir, roots)
        if not files:
            raise InvalidRequestError(f"no images in the input folder {req.input_dir!r}")
        return [BatchItem(path.name, lambda path=path: open_image(path, path.name)) for path in files]
    items = []
    for index, data in enumerate(req.batch_images):
        name = Path(req.batch_names[index]).name if index < len(req.batch_names) else f"image-{index + 1}.png"
        items.append(BatchItem(name or f"image-{index + 1}.png",
                               lambda data=data, name=name: decode_upload(data, name)))
    return items


def mask_for(item: BatchItem, folders: BatchFolders, roots: Sequence[Path]) -> Image.Image | None:
    """The mask of the same file stem in the mask folder (None: no mask folder or no such file)."""
    if folders.mask_dir is None:
        return None
    for path in image_files(folders.mask_dir, roots):
        if path.stem == item.stem:
            return open_image(path, f"mask {path.name}")
    return None


def open_image(path: Path, what: str) -> Image.Image:
    from modules.images.codec import REQUEST_IMAGE_MAX_PIXELS

    try:
        with Image.open(path) as image:
            if image.width * image.height > REQUEST_IMAGE_MAX_PIXELS:
                raise InvalidRequestError(f"{what} is too large ({image.width}x{image.height})")
            image.load()
            return image.copy()
    except Image.UnidentifiedImageError:
        raise InvalidRequestError(f"cannot read {what}: not an image file") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidRequestError(f"cannot read {what}: {type(exc).__name__}") from None


def decode_upload(data: str, what: str) -> Image.Image:
    from modules.images.codec import ImageDecodeError, decode_request_image

    try:
        return decode_request_image(data, what)
    except ImageDecodeError as exc:
        raise InvalidRequestError(str(exc)) from None


def png_info_changes(image: Image.Image, req: "Img2ImgBatchRequest") -> dict[str, Any]:
    """What ``req.png_info_props`` take from the image's infotext, as request fields (A1111: the prompts are
    appended to the request's, seed, CFG scale, sampler and steps replace them)."""
    from modules.images.codec import read_infotext
    from modules.images.infotext import parse_infotext

    text = read_infotext(image) or ""
    if not req.use_png_info or not text:
        return {}
    parsed = parse_infotext(text)
    wanted = set(req.png_info_props)
    changes: dict[str, Any] = {}
    if "Prompt" in wanted and parsed.get("Prompt"):
        changes["prompt"] = " ".join(part for part in (req.prompt, str(parsed["Prompt"])) if part)
    if "Negative prompt" in wanted and parsed.get("Negative prompt"):
        changes["negative_prompt"] = " ".join(part for part in (req.negative_prompt, str(parsed["Negative prompt"]))
                                              if part)
    for prop, key, cast in (("Seed", "seed", int), ("CFG scale", "cfg_scale", float), ("Sampler", "sampler_name", str),
                            ("Steps", "steps", int)):
        if prop in wanted and f"{prop}:" in text and parsed.get(prop) not in (None, ""):
            try:
                changes[key] = cast(parsed[prop])
            except (TypeError, ValueError):
                continue
    return changes


def precheck_batch(ctx: "AppContext", req: "Img2ImgBatchRequest") -> None:
    """Refuse before queueing: a folder outside the allowed roots (or missing), an empty input folder, an
    uploaded image that does not decode, more images than the studio allows in one job; then what an img2img
    job checks (scripts, add-ons, seeds, prompt syntax, sampler, against the loaded model)."""
    from modules.generation.prechecks import precheck_img2img

    roots = roots_of(ctx)
    folders = check_folders(req, roots, create_output=False)
    items = batch_items(req, folders, roots)
    limit = getattr(getattr(ctx, "flags", None), "max_images", 64)
    if len(items) * req.n_iter * req.batch_size > max(limit, 1) * 16:
        raise InvalidRequestError(f"this batch would make {len(items) * req.n_iter * req.batch_size} images; "
                                  "split it into smaller batches")
    for item in items if folders.input_dir is None else ():
        item.load()
    precheck_img2img(ctx, req)
