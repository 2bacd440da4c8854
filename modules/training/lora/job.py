"""The ``train_lora`` job kind: a session in the data dir, trained on the training lane, exported to models/Lora.

SD 1.x/2.x and SDXL base models (FLUX and the SDXL refiner are refused at submit, from the file's header);
the UNet, or the UNet and the text encoder(s). A job that was running when the studio died is recorded as
interrupted and offered to be resumed (``on_interrupted``; :mod:`modules.jobs.interrupted`).

It runs beside generation (the ``training`` lane) and pauses while generation has work. Stopped, its
session keeps the last state and the same request resumes it; a finished run writes
``models/Lora/<name>.safetensors`` (kohya keys, recipe in the metadata), listed at once for
``<lora:name:1>``. The base checkpoint is loaded as the training's own copy (training changes its UNet),
so the generation model stays as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.folder_access import FolderNotAllowed, resolve_folder, roots_of
from modules.jobs.kinds import JobKind
from modules.models.errors import ModelLoadError
from modules.training.lora.errors import DatasetError, SessionError, TrainingError
from modules.training.lora.request import TrainLoraRequest
from modules.training.lora.session import Session

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

TRAINING_LANE = "training"
USER_ERRORS: tuple[type[Exception], ...] = (FolderNotAllowed, DatasetError, SessionError, TrainingError,
                                            ModelLoadError)


def _output(ctx: "AppContext", req: TrainLoraRequest) -> Any:
    return ctx.paths.lora_dir / f"{req.name}.safetensors"


def precheck(ctx: "AppContext", req: TrainLoraRequest) -> None:
    resolve_folder(req.dataset, roots_of(ctx), what="training folder")
    session = Session.for_request(ctx.paths.data_dir, req)
    saved = session.saved_step()
    unfinished = saved is not None and saved < req.steps  # a stopped session resumed, or one trained further
    if _output(ctx, req).exists() and not req.overwrite and not unfinished:
        raise TrainingError(f"a LoRA named {req.name!r} exists already: pick another name or set overwrite")
    if not (req.checkpoint or ctx.settings.current.sd_model_checkpoint or ctx.models.active):
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    if req.checkpoint:
        check_family(ctx.models.resolve(req.checkpoint).path, ctx.flags.allow_pickle)
    cluster = getattr(ctx, "cluster", None)
    if cluster is not None:  # --ray: with ray_training = actors, what an actor cannot run is refused here
        cluster.check_training(req)
    if req.devices != "single":
        from modules.training.distributed import plan

        plan(req.devices)  # refused here when the machine lacks the GPUs asked for


def check_family(path: Path, allow_pickle: bool = False) -> None:
    """Refuse, before anything is loaded, a base model LoRA training does not offer (read from its header)."""
    from modules.models.detect import detect_checkpoint

    family = detect_checkpoint(path, allow_pickle=allow_pickle).family
    if family.architecture == "flux":
        raise TrainingError(f"LoRA training of {family.label} is not offered: the studio's LoRA loader applies SD "
                            "1.x/2.x and SDXL LoRAs only (and A1111 has no FLUX), so a FLUX LoRA could not be used; "
                            "pick an SD 1.x, 2.x or SDXL checkpoint")
    if family.id == "sdxl-refiner":
        raise TrainingError("LoRA training of an SDXL refiner is not offered (it has only the second text encoder): "
                            "train the SDXL base model")


def run(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from modules.models.loader import load_model
    from modules.models.loader_options import load_options_for
    from modules.training.lora.dataset import load_dataset
    from modules.training.lora.export import export_lora
    from modules.training.lora.trainer import train

    req: TrainLoraRequest = job.request
    roots = roots_of(ctx)
    folder = resolve_folder(req.dataset, roots, what="training folder")
    session = Session.for_request(ctx.paths.data_dir, req)
    active = ctx.models.active
    reference = req.checkpoint or ctx.settings.current.sd_model_checkpoint or (active.info.name if active else None)
    info = ctx.models.resolve(reference) if reference else None
    if info is None:
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    if req.devices != "single":
        return _run_workers(ctx, req, info, folder, roots, session, control)
    control.progress.text = f"loading {info.name} for training"
    model = load_model(info.path, load_options_for(ctx.flags, ctx.settings, ctx.paths))
    size = req.resolution or model.native_size[0]
    images = load_dataset(folder, roots, size, req.instance_prompt)
    outcome = train(req, model, images, session, control)
    result: dict[str, Any] = {"name": req.name, "session": ctx.paths.shown(session.folder),
                              "steps": outcome.last_step, "of": req.steps, "stopped": outcome.stopped,
                              "images": len(images), "seconds": round(outcome.seconds, 2),
                              "last_loss": outcome.losses[-1] if outcome.losses else None}
    if outcome.stopped or outcome.last_step < req.steps:
        result["note"] = "stopped: submit the same request to resume from the last saved step"
        return result
    path = export_lora(_output(ctx, req), model.pipeline, req, family_id=model.family.id, metadata={
        "ss_resolution": f"({size}, {size})", "ss_num_train_images": str(len(images)),
        "ss_sd_model_name": info.name, "ss_training_comment": f"Atelier LoRA training of {req.instance_prompt!r}"})
    result["lora"] = ctx.paths.shown(path)
    return result


def _run_workers(ctx: "AppContext", req: TrainLoraRequest, info: Any, folder: Path, roots: list[Path],
                 session: Session, control: "JobControl") -> dict[str, Any]:
    """The same run on several worker processes (``devices``; :mod:`modules.training.distributed`): this job
    starts them, follows their progress and passes stop and pause on; rank 0 writes the session and the LoRA."""
    from modules.models.loader_options import load_options_for
    from modules.training.distributed import WorkerSpec, plan, run_lora, threads_per_worker

    launch = plan(req.devices)
    assert launch is not None
    spec = WorkerSpec(req=req, checkpoint=info.path, load_options=load_options_for(ctx.flags, ctx.settings, ctx.paths),
                      dataset=folder, roots=tuple(roots), size=req.resolution, session_folder=session.folder,
                      output=_output(ctx, req), threads=threads_per_worker(launch.world_size), export_metadata={
                          "ss_sd_model_name": info.name,
                          "ss_training_comment": f"Atelier LoRA training of {req.instance_prompt!r}"})
    done = run_lora(spec, launch, control)
    result: dict[str, Any] = {"name": req.name, "session": ctx.paths.shown(session.folder), "steps": done["steps"],
                              "of": req.steps, "stopped": done["stopped"], "images": done["images"],
                              "seconds": done["seconds"], "last_loss": done["last_loss"],
                              "processes": done["processes"], "backend": done["backend"]}
    if "lora" in done:
        result["lora"] = ctx.paths.shown(Path(done["lora"]))
    else:
        result["note"] = "stopped: submit the same request to resume from the last saved step"
    return result


def describe(result: Any) -> dict[str, Any] | None:
    return dict(result) if isinstance(result, dict) else None


TRAIN_LORA = JobKind(
    name="train_lora", request=TrainLoraRequest, run=run, precheck=precheck, describe=describe,
    summary="Train a LoRA (SD 1.x/2.x, SDXL; UNet or UNet + text encoders) on a folder of images (a resumable "
            "session; exported to models/Lora in kohya keys).",
    resumable=True, user_errors=USER_ERRORS, lane=TRAINING_LANE, yields_to=("device",),
    on_interrupted="offer_resume")

KINDS = (TRAIN_LORA,)
