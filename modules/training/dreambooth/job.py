"""The ``train_dreambooth`` job kind: class images, training and export of a full checkpoint.

A session in ``<data>/training/dreambooth/<name>/`` (the LoRA session's files, plus ``class_images/``). The
job first makes the class images the session lacks as queued ``txt2img`` jobs with the base model
(:mod:`.class_images`), then loads its own copy of the base checkpoint, trains on the training lane
(pausing while generation has work) and, when it reaches ``steps``, writes
``models/Stable-diffusion/<name>.safetensors`` in the original layout, listed at once. Stopped, the
session keeps its last state and the same request resumes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.folder_access import FolderNotAllowed, resolve_folder, roots_of
from modules.jobs.kinds import JobKind
from modules.models.errors import ModelLoadError
from modules.training.dreambooth.request import TrainDreamboothRequest
from modules.training.lora.errors import DatasetError, SessionError, TrainingError
from modules.training.lora.job import TRAINING_LANE
from modules.training.lora.session import Session

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

USER_ERRORS: tuple[type[Exception], ...] = (FolderNotAllowed, DatasetError, SessionError, TrainingError,
                                            ModelLoadError)
SESSION_KIND = "dreambooth"


def session_for(ctx: "AppContext", req: TrainDreamboothRequest) -> Session:
    return Session.in_folder(ctx.paths.data_dir / "training" / SESSION_KIND / req.name, req)


def output_path(ctx: "AppContext", req: TrainDreamboothRequest) -> Path:
    return ctx.paths.ckpt_dirs[0] / f"{req.name}.safetensors"


def export_paths(ctx: "AppContext", req: TrainDreamboothRequest) -> list[Path]:
    """What the finished run writes: the single file, the diffusers folder, or both (``export_format``)."""
    from modules.training.dreambooth.export import diffusers_folder_for

    single = output_path(ctx, req)
    return {"single_file": [single], "diffusers": [diffusers_folder_for(single)],
            "both": [single, diffusers_folder_for(single)]}[req.export_format]


def _base_reference(ctx: "AppContext", req: TrainDreamboothRequest) -> str | None:
    active = ctx.models.active
    return req.checkpoint or ctx.settings.current.sd_model_checkpoint or (active.info.name if active else None)


def precheck(ctx: "AppContext", req: TrainDreamboothRequest) -> None:
    from modules.models.devices import device_choice
    from modules.training.dreambooth.options import check_8bit_adam, resolve_precision

    device = device_choice(ctx.flags)[0]
    if req.use_8bit_adam:
        check_8bit_adam(device)
    if req.mixed_precision == "bf16":
        resolve_precision(req.mixed_precision, device)
    resolve_folder(req.dataset, roots_of(ctx), what="instance images folder")
    saved = session_for(ctx, req).saved_step()
    unfinished = saved is not None and saved < req.steps
    for target in export_paths(ctx, req):
        if target.exists() and not req.overwrite and not unfinished:
            what = "a diffusers folder" if target.suffix != ".safetensors" else "a checkpoint"
            raise TrainingError(f"{what} named {target.name!r} exists already: pick another name or set overwrite")
    reference = _base_reference(ctx, req)
    if not reference:
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    info = ctx.models.resolve(reference)
    if info is not None and info.path.resolve() == output_path(ctx, req).resolve():
        raise TrainingError(f"the base checkpoint and the export are the same file ({req.name}): pick another name")


def run(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from modules.models.devices import device_choice
    from modules.models.loader import load_model
    from modules.models.loader_options import load_options_for
    from modules.training.dreambooth.class_images import ensure_class_images
    from modules.training.dreambooth.export import write_checkpoint
    from modules.training.dreambooth.options import resolve_precision
    from modules.training.dreambooth.trainer import train
    from modules.training.lora.dataset import load_dataset

    req: TrainDreamboothRequest = job.request
    roots = roots_of(ctx)
    folder = resolve_folder(req.dataset, roots, what="instance images folder")
    session = session_for(ctx, req)
    reference = _base_reference(ctx, req)
    info = ctx.models.resolve(reference) if reference else None
    if info is None:
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    result: dict[str, Any] = {"name": req.name, "session": ctx.paths.shown(session.folder), "steps": 0,
                              "of": req.steps, "stopped": False}
    class_folder, generated = None, 0
    if req.prior_preservation:
        class_folder, generated = ensure_class_images(ctx, job, control, req, info.name, session.folder)
        result["class_images_generated"] = generated
        if control.should_stop:
            return {**result, "stopped": True, "steps": session.saved_step() or 0,
                    "note": "stopped while making class images: submit the same request to go on"}
    precision = resolve_precision(req.mixed_precision, device_choice(ctx.flags)[0])
    control.progress.text = f"loading {info.name} for training"
    model = load_model(info.path, load_options_for(ctx.flags, ctx.settings, ctx.paths))
    size = req.resolution or model.native_size[0]
    instances = load_dataset(folder, roots, size, req.instance_prompt)
    classes = load_dataset(class_folder, [class_folder], size, req.class_prompts()[0]) if class_folder else []
    outcome = train(req, model, instances, classes[:req.num_class_images], session, control, precision=precision)
    result.update({"steps": outcome.last_step, "stopped": outcome.stopped, "images": len(instances),
                   "class_images": len(classes[:req.num_class_images]), "precision": precision,
                   "seconds": round(outcome.seconds, 2),
                   "last_loss": outcome.losses[-1] if outcome.losses else None})
    if outcome.stopped or outcome.last_step < req.steps:
        result["note"] = "stopped: submit the same request to resume from the last saved step"
        return result
    control.progress.text = f"writing the checkpoint {req.name}"
    metadata = {"atelier_base_checkpoint": info.name, "atelier_training": "dreambooth",
                "atelier_recipe": req.model_dump(mode="json")}
    single = output_path(ctx, req)
    # the diffusers folder is made from the single file by the studio's converter; with "diffusers" alone the
    # single file is written in the session and removed afterwards
    path = write_checkpoint(single if req.export_format != "diffusers" else session.folder / "export.safetensors",
                            model, dtype=req.export_dtype, metadata=metadata)
    if req.export_format != "diffusers":
        result["checkpoint"] = ctx.paths.shown(path)
    if req.export_format in ("diffusers", "both"):
        from modules.training.dreambooth.export import diffusers_folder_for, write_diffusers

        control.progress.text = f"writing the diffusers folder {req.name}-diffusers"
        del model  # the converter loads the written file again: free the training copy first
        folder = write_diffusers(diffusers_folder_for(single), path, cache_dir=ctx.paths.cache_dir,
                                 dtype=req.export_dtype, metadata=metadata)
        result["diffusers_folder"] = ctx.paths.shown(folder)
        if req.export_format == "diffusers":
            path.unlink(missing_ok=True)
    ctx.catalog.refresh()
    return result


def describe(result: Any) -> dict[str, Any] | None:
    return dict(result) if isinstance(result, dict) else None


TRAIN_DREAMBOOTH = JobKind(
    name="train_dreambooth", request=TrainDreamboothRequest, run=run, precheck=precheck, describe=describe,
    summary="DreamBooth: fine-tune a checkpoint on a few images of a subject under a rare token, with class "
            "images made once by the base model (prior preservation); a resumable session, exported to "
            "models/Stable-diffusion as a single-file checkpoint.",
    resumable=True, user_errors=USER_ERRORS, lane=TRAINING_LANE, yields_to=("device",),
    on_interrupted="offer_resume")

KINDS = (TRAIN_DREAMBOOTH,)
