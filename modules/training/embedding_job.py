"""The ``train_embedding`` job kind: textual inversion in a session, exported to models/embeddings.

Like ``train_lora`` (:mod:`modules.training.lora.job`): a session in ``<data>/training/embedding/<name>/``,
the training lane (pausing while generation has work), resumable, stopped runs continue with the same
request. ``steps: 0`` only creates the embedding from its initial vectors (A1111's create embedding).
The file is ``models/embeddings/<name>.safetensors`` (A1111's ``emb_params``), written in a prompt by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.folder_access import FolderNotAllowed, resolve_folder, roots_of
from modules.generation.validation import InvalidRequestError  # EmbeddingError's base: no torch at start-up
from modules.jobs.kinds import JobKind
from modules.models.errors import ModelLoadError
from modules.training.embedding_request import TrainEmbeddingRequest
from modules.training.lora.errors import DatasetError, SessionError, TrainingError
from modules.training.lora.job import TRAINING_LANE
from modules.training.lora.session import Session

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job
    from modules.jobs.progress import JobControl

USER_ERRORS: tuple[type[Exception], ...] = (FolderNotAllowed, DatasetError, SessionError, TrainingError,
                                            ModelLoadError, InvalidRequestError)


def output_path(ctx: "AppContext", name: str) -> Path:
    return ctx.paths.embeddings_dir / f"{name}.safetensors"


def existing_file(ctx: "AppContext", name: str) -> Path | None:
    """The embedding file of that name in models/embeddings (any of A1111's suffixes), or None."""
    for suffix in (".safetensors", ".pt", ".bin"):
        path = ctx.paths.embeddings_dir / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def session_for(ctx: "AppContext", req: TrainEmbeddingRequest) -> Session:
    return Session.in_folder(ctx.paths.data_dir / "training" / "embedding" / req.name, req)


def precheck(ctx: "AppContext", req: TrainEmbeddingRequest) -> None:
    if req.steps > 0:
        resolve_folder(req.dataset or "", roots_of(ctx), what="training folder")
    session = session_for(ctx, req)
    saved = session.saved_step()
    unfinished = saved is not None and saved < req.steps
    existing = existing_file(ctx, req.name)
    if req.initial == "file":
        if existing is None:
            raise TrainingError(f"no embedding named {req.name!r} in models/embeddings to train: create it first")
    elif existing is not None and not req.overwrite and not unfinished:
        raise TrainingError(f"an embedding named {req.name!r} exists already: pick another name or set overwrite")
    if not (req.checkpoint or ctx.settings.current.sd_model_checkpoint or ctx.models.active):
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    if req.checkpoint:
        ctx.models.resolve(req.checkpoint)
    cluster = getattr(ctx, "cluster", None)
    if cluster is not None:  # --ray: with ray_training = actors, what an actor cannot run is refused here
        cluster.check_training(req)


def _initial(ctx: "AppContext", req: TrainEmbeddingRequest, model: Any) -> Any:
    from modules.generation.addons.embeddings import read_embedding, vectors_for
    from modules.training.textual_inversion import init_vectors

    if req.initial == "init_text":
        return init_vectors(model, req.init_text, req.vector_count())
    path = existing_file(ctx, req.name)
    if path is None:
        raise TrainingError(f"no embedding named {req.name!r} in models/embeddings to train: create it first")
    embedding = read_embedding(path)
    chosen = vectors_for(model.pipeline, embedding)
    if chosen is None or len(chosen) != 1:
        raise TrainingError(f"the embedding {req.name!r} (vector size {embedding.width}) does not fit this model")
    vectors = next(iter(chosen.values()))
    if req.num_vectors_per_token not in (None, int(vectors.shape[0])):
        raise TrainingError(f"the embedding {req.name!r} has {int(vectors.shape[0])} vector(s), not "
                            f"{req.num_vectors_per_token}")
    return vectors


def run(ctx: "AppContext", job: "Job", control: "JobControl") -> dict[str, Any]:
    from modules.models.loader import load_model
    from modules.models.loader_options import load_options_for
    from modules.training.lora.dataset import load_dataset
    from modules.training.textual_inversion import check_model, train_embedding, write_embedding

    req: TrainEmbeddingRequest = job.request
    roots = roots_of(ctx)
    active = ctx.models.active
    reference = req.checkpoint or ctx.settings.current.sd_model_checkpoint or (active.info.name if active else None)
    info = ctx.models.resolve(reference) if reference else None
    if info is None:
        raise TrainingError("no base checkpoint: name one (checkpoint) or load one first")
    control.progress.text = f"loading {info.name} for training"
    model = load_model(info.path, load_options_for(ctx.flags, ctx.settings, ctx.paths))
    check_model(model)
    initial = _initial(ctx, req, model)
    metadata = {"name": req.name, "sd_checkpoint_name": info.name, "vectors": str(int(initial.shape[0])),
                "atelier_recipe": req.model_dump(mode="json")}
    if req.steps == 0:
        path = write_embedding(output_path(ctx, req.name), initial, {**metadata, "step": "0"})
        return {"name": req.name, "embedding": ctx.paths.shown(path), "steps": 0, "of": 0, "stopped": False,
                "vectors": int(initial.shape[0]), "seconds": 0.0, "last_loss": None}
    folder = resolve_folder(req.dataset or "", roots, what="training folder")
    size = req.resolution or model.native_size[0]
    images = load_dataset(folder, roots, size, "")
    session = session_for(ctx, req)
    outcome, vectors = train_embedding(req, model, images, session, control, initial)
    result: dict[str, Any] = {"name": req.name, "session": ctx.paths.shown(session.folder),
                              "steps": outcome.last_step, "of": req.steps, "stopped": outcome.stopped,
                              "images": len(images), "vectors": int(vectors.shape[0]),
                              "seconds": round(outcome.seconds, 2),
                              "last_loss": outcome.losses[-1] if outcome.losses else None}
    if outcome.stopped or outcome.last_step < req.steps:
        result["note"] = "stopped: submit the same request to resume from the last saved step"
        return result
    stale = existing_file(ctx, req.name)
    path = write_embedding(output_path(ctx, req.name), vectors, {**metadata, "step": str(outcome.last_step)})
    if stale is not None and stale != path:  # a created .pt/.bin of the same name would shadow the trained file
        stale.unlink(missing_ok=True)
    result["embedding"] = ctx.paths.shown(path)
    return result


def describe(result: Any) -> dict[str, Any] | None:
    return dict(result) if isinstance(result, dict) else None


TRAIN_EMBEDDING = JobKind(
    name="train_embedding", request=TrainEmbeddingRequest, run=run, precheck=precheck, describe=describe,
    summary="Train a textual-inversion embedding on a folder of images (a resumable session; exported to "
            "models/embeddings as an A1111 embedding), or create one from an init text (steps 0).",
    resumable=True, user_errors=USER_ERRORS, lane=TRAINING_LANE, yields_to=("device",),
    on_interrupted="offer_resume")

KINDS = (TRAIN_EMBEDDING,)
