"""The Train tab: Dataset (smart crop + captions, previewed), LoRA, Textual inversion and Sessions.

Thin: requests are built here and submitted through the job queue (:func:`modules.jobs.submit.submit_job`);
the logic lives in :mod:`modules.training` (dataset preparation, uploads, sessions, the loss plot and
speed from the session's loss log, sample listing). A training job is followed like a generation job
(:func:`webui.progress.watch`); Stop cancels it and the session keeps its last state, so Train with the
same settings (or Resume in Sessions) continues it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import gradio as gr

from webui.common import active_title, checkpoint_titles, owner_of, readable, status_html

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.jobs.model import Job

SESSION_COLUMNS = ["Kind", "Name", "Step", "Last loss", "State"]
#: the LoRA form's targets: the UNet alone, or with the text encoder(s) (``train_text_encoder``)
LORA_TARGETS = ("UNet only", "UNet + text encoder")
#: the LoRA form's devices (``devices``; gpu:N and cpu:N may be typed too): modules/training/distributed.py
LORA_DEVICES = [("One device (default)", "single"), ("All GPUs (one process each)", "all"),
                ("Two CPU processes (gloo)", "cpu:2")]


@dataclass
class TrainTab:
    """The tab's handlers (the tests call them as the page's events do)."""

    prepare_preview: Callable[..., Any]
    prepare_write: Callable[..., Any]
    train_lora: Callable[..., Iterator[tuple[Any, ...]]]
    stop_lora: Callable[..., Any]
    train_embedding: Callable[..., Iterator[tuple[Any, ...]]]
    sessions: Callable[[], Any]
    resume: Callable[..., Any]
    delete: Callable[..., Any]


def _files(value: Any) -> list[Path]:
    if not value:
        return []
    items = value if isinstance(value, list) else [value]
    return [Path(getattr(item, "name", item)) for item in items if item]


def _default_size(ctx: "AppContext") -> int:
    active = ctx.models.active
    return int(active.model.native_size[0]) if active is not None else 512


def _checkpoint_name(ctx: "AppContext", title: str | None) -> str | None:
    if not title:
        return None
    info = ctx.catalog.find(title)
    return info.name if info is not None else title


def _dataset_path(ctx: "AppContext", folder: str, uploads: list[Path], name: str) -> str:
    """The dataset the request names: the uploads copied into the data dir, else the typed folder."""
    from modules.training.uploads import save_uploads

    if uploads:
        saved, _ = save_uploads(ctx.paths.data_dir, name.replace(" ", "_"), uploads)
        return str(saved.relative_to(ctx.paths.data_dir))
    return (folder or "").strip()


def _gallery(folder: Path) -> list[tuple[str, str]]:
    from modules.training.sampling import list_samples

    return [(str(path), f"step {step} · prompt {index + 1}") for path, step, index in list_samples(folder)[:24]]


def _watch_view(session_folder: Path, of: int) -> tuple[Any, str, list[tuple[str, str]]]:
    from modules.training.monitor import loss_plot, read_log, speed

    records = read_log(session_folder)
    return loss_plot(records), speed(records, of).text(), _gallery(session_folder / "samples")


def follow_training(ctx: "AppContext", job: "Job", session_folder: Path, of: int
                    ) -> Iterator[tuple[str, Any, str, list[tuple[str, str]]]]:
    """(status, loss plot, speed, samples) while the job waits or runs, then once more when it is done."""
    from webui.progress import bar_html, watch

    for tick in watch(ctx, job, previews=False, interval=0.5):
        yield (tick.status, *_watch_view(session_folder, of))
    result = job.result if isinstance(job.result, dict) else {}
    if job.error and not result:
        status = bar_html("failed" if job.state.value == "failed" else "cancelled", 1.0,
                          f"{'Failed' if job.state.value == 'failed' else 'Stopped'}: {ctx.paths.scrub(job.error)}"
                          + (" · the session keeps its last state: Train again (or Resume) to continue"
                             if job.state.value != "failed" else ""))
    elif result.get("stopped") or result.get("steps", of) < of:
        status = bar_html("interrupted", 1.0, f"Stopped at step {result.get('steps')}/{of}: train again with the "
                                              "same settings (or Resume in Sessions) to continue")
    else:
        made = (result.get("lora") or result.get("embedding") or result.get("checkpoint")
                or result.get("diffusers_folder") or "")
        status = bar_html("done", 1.0, f"Done: {result.get('steps')} steps in {result.get('seconds', 0):.1f} s · "
                                       f"last loss {result.get('last_loss') or 0:.4f} · {made}")
    yield (status, *_watch_view(session_folder, of))


def build_train_tab(ctx: "AppContext", sections: Sequence[Callable[[list[str]], Any]] = ()) -> TrainTab:
    """The tab; ``sections`` build more sub-tabs after Dataset (each is given the checkpoint titles), e.g. DreamBooth
    (:func:`webui.train_dreambooth.build_dreambooth_tab`, which uses this module's helpers)."""
    from modules.training.sessions import list_sessions

    def prepare_items(files: Any, folder: str, size: float, template: str, token: str, faces: bool) -> list[Any]:
        from modules.folder_access import image_files, resolve_folder, roots_of
        from modules.training.dataset_prep import prepare

        sources = _files(files)
        if not sources and (folder or "").strip():
            roots = roots_of(ctx)
            sources = image_files(resolve_folder(folder, roots, what="dataset folder"), roots)
            sources += [p.with_suffix(".txt") for p in sources if p.with_suffix(".txt").is_file()]
        return prepare(sources, int(size or _default_size(ctx)), template=template, token=token, faces=faces)

    def prepare_preview(files: Any, folder: str, size: float, template: str, token: str, faces: bool
                        ) -> tuple[Any, str]:
        from modules.training.dataset_prep import preview_grid

        try:
            items = prepare_items(files, folder, size, template, token, faces)
        except (ValueError, OSError) as exc:
            return None, status_html(ctx.paths.scrub(readable(exc)), "error")
        methods = ", ".join(f"{m}: {sum(1 for i in items if i.method == m)}" for m in ("face", "subject", "centre")
                            if any(i.method == m for i in items))
        return preview_grid(items), status_html(f"{len(items)} image(s) · crop centred on {methods}", "ok")

    def prepare_write(files: Any, folder: str, size: float, template: str, token: str, faces: bool, name: str
                      ) -> tuple[str, Any]:
        from modules.training.dataset_prep import write_prepared
        from modules.training.uploads import dataset_dir

        try:
            target = dataset_dir(ctx.paths.data_dir, name)
            items = prepare_items(files, folder, size, template, token, faces)
            write_prepared(items, target)
        except (ValueError, OSError) as exc:
            return status_html(ctx.paths.scrub(readable(exc)), "error"), gr.skip()
        relative = str(target.relative_to(ctx.paths.data_dir))
        return (status_html(f"{len(items)} image(s) prepared in {relative}: use it as the dataset folder", "ok"),
                relative)

    def submit_and_follow(build: Callable[[], Any], owner: str, kind_folder: str
                          ) -> Iterator[tuple[Any, ...]]:
        from modules.jobs.submit import submit_job
        from webui.progress import bar_html

        try:
            req = build()
            job = submit_job(ctx, req, owner=owner, source="webui")
        except Exception as exc:  # noqa: BLE001 - a refused request is said in the page
            yield bar_html("failed", 1.0, f"Not started: {ctx.paths.scrub(readable(exc))}"), None, "", []
            return
        folder = ctx.paths.data_dir / "training" / kind_folder / req.name
        yield from follow_training(ctx, job, folder, req.steps)

    def train_lora(checkpoint: str, folder: str, uploads: Any, name: str, prompt: str, rank: float, alpha: float,
                   steps: float, lr: float, batch: float, seed: float, resolution: float, sample_every: float,
                   sample_prompts: str, targets: str = LORA_TARGETS[0], te_lr: float | None = None,
                   devices: str = "single", request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        from modules.training.lora.request import TrainLoraRequest

        def build() -> TrainLoraRequest:
            dataset = _dataset_path(ctx, folder, _files(uploads), name or "")
            return TrainLoraRequest(
                name=name, checkpoint=_checkpoint_name(ctx, checkpoint), dataset=dataset, instance_prompt=prompt,
                rank=int(rank), alpha=float(alpha), steps=int(steps), learning_rate=float(lr),
                batch_size=int(batch), seed=int(seed), resolution=int(resolution) or None,
                sample_every=int(sample_every or 0),
                sample_prompts=[p for p in (sample_prompts or "").splitlines() if p.strip()],
                train_text_encoder=targets == LORA_TARGETS[1],
                text_encoder_lr=float(te_lr) if targets == LORA_TARGETS[1] and te_lr else None,
                devices=(devices or "single").strip())

        yield from submit_and_follow(build, owner_of(request), "lora")

    def stop_lora(name: str) -> str:
        from modules.training.sessions import stop

        count = stop(ctx, "lora", (name or "").strip())
        return status_html("Stopping: the session keeps its last state" if count else "No training of that name runs",
                           "ok" if count else "warn")

    def train_embedding(checkpoint: str, folder: str, uploads: Any, name: str, init_text: str, vectors: float,
                        template: str, steps: float, lr: float, batch: float, seed: float, resolution: float,
                        request: gr.Request | None = None) -> Iterator[tuple[Any, ...]]:
        from modules.training.embedding_request import TrainEmbeddingRequest

        def build() -> TrainEmbeddingRequest:
            dataset = _dataset_path(ctx, folder, _files(uploads), name or "")
            return TrainEmbeddingRequest(
                name=name, checkpoint=_checkpoint_name(ctx, checkpoint), dataset=dataset, init_text=init_text,
                num_vectors_per_token=int(vectors), caption_template=template, steps=int(steps),
                learning_rate=float(lr), batch_size=int(batch), seed=int(seed), resolution=int(resolution) or None)

        yield from submit_and_follow(build, owner_of(request), "embedding")

    def sessions() -> tuple[Any, Any]:
        found = list_sessions(ctx)
        keys = [f"{s.kind}/{s.name}" for s in found]
        # a session a crash interrupted is picked first: Resume continues it from its last checkpoint
        first = next((f"{s.kind}/{s.name}" for s in found if s.state == "interrupted"), keys[0] if keys else None)
        return [s.row() for s in found], gr.update(choices=keys, value=first)

    def _split(key: str) -> tuple[str, str]:
        kind, _, name = (key or "").partition("/")
        return kind, name

    def resume(key: str, request: gr.Request | None = None) -> tuple[str, Any, Any]:
        from modules.training.sessions import resume as resume_session

        try:
            job = resume_session(ctx, *_split(key), owner=owner_of(request))
        except Exception as exc:  # noqa: BLE001 - said in the page
            return (status_html(ctx.paths.scrub(readable(exc)), "error"), *sessions())
        return (status_html(f"Resumed {key} (job {job.id[:8]}): watch it in its tab or here", "ok"), *sessions())

    def delete(key: str) -> tuple[str, Any, Any]:
        from modules.training.sessions import delete as delete_session

        try:
            target = delete_session(ctx, *_split(key))
        except Exception as exc:  # noqa: BLE001 - said in the page
            return (status_html(ctx.paths.scrub(readable(exc)), "error"), *sessions())
        return (status_html(f"Moved {key} to {ctx.paths.shown(target)}", "ok"), *sessions())

    titles = checkpoint_titles(ctx)
    size = _default_size(ctx)
    with gr.Tabs(elem_id="train_tabs"):
        with gr.Tab("Dataset", id="train_dataset"):
            with gr.Row():
                with gr.Column():
                    ds_files = gr.File(label="Images (and .txt captions)", file_count="multiple",
                                       file_types=["image", ".txt"], type="filepath", elem_id="train_ds_files")
                    ds_folder = gr.Textbox(label="…or a folder (under the data dir or an --allowed-dir)",
                                           elem_id="train_ds_folder")
                    with gr.Row():
                        ds_name = gr.Textbox(label="Dataset name", value="my-subject", elem_id="train_ds_name")
                        ds_size = gr.Number(label="Size", value=size, precision=0, minimum=64, maximum=2048)
                    with gr.Row():
                        ds_token = gr.Textbox(label="Instance token", value="sks shape", elem_id="train_ds_token")
                        ds_template = gr.Textbox(label="Caption template ({token}, {filewords}: the .txt caption)",
                                                 value="a photo of {token}, {filewords}")
                    ds_faces = gr.Checkbox(label="Centre on a detected face when there is one", value=True)
                    with gr.Row():
                        ds_preview = gr.Button("Preview", elem_id="train_ds_preview")
                        ds_write = gr.Button("Prepare", variant="primary", elem_id="train_ds_prepare")
                    ds_status = gr.HTML("", elem_id="train_ds_status")
                ds_grid = gr.Image(label="Preview", type="pil", interactive=False, elem_id="train_ds_grid")
        for build_section in sections:
            build_section(titles)
        with gr.Tab("LoRA", id="train_lora"):
            with gr.Row():
                with gr.Column():
                    lo_ckpt = gr.Dropdown(titles, value=active_title(ctx), label="Base checkpoint",
                                          elem_id="train_lora_checkpoint")
                    lo_folder = gr.Textbox(label="Dataset folder (under the data dir or an --allowed-dir)",
                                           elem_id="train_lora_folder")
                    lo_files = gr.File(label="…or upload images", file_count="multiple", file_types=["image", ".txt"],
                                       type="filepath", elem_id="train_lora_files")
                    with gr.Row():
                        lo_name = gr.Textbox(label="LoRA name", value="my-lora", elem_id="train_lora_name")
                        lo_prompt = gr.Textbox(label="Instance prompt", value="a sks shape",
                                               elem_id="train_lora_prompt")
                    with gr.Row():
                        lo_rank = gr.Slider(1, 128, value=4, step=1, label="Rank")
                        lo_alpha = gr.Number(label="Alpha", value=4.0, minimum=0.01)
                        lo_steps = gr.Number(label="Steps", value=200, precision=0, minimum=1)
                    with gr.Row():
                        lo_targets = gr.Radio(list(LORA_TARGETS), value=LORA_TARGETS[0], label="Train",
                                              elem_id="train_lora_targets")
                        lo_te_lr = gr.Number(label="Text encoder learning rate (empty: the UNet's)", value=None,
                                             minimum=0, elem_id="train_lora_te_lr")
                        lo_devices = gr.Dropdown(LORA_DEVICES, value="single", allow_custom_value=True,
                                                 label="Devices (or gpu:N, cpu:N)", elem_id="train_lora_devices")
                    with gr.Row():
                        lo_lr = gr.Number(label="Learning rate", value=1e-4)
                        lo_batch = gr.Slider(1, 16, value=1, step=1, label="Batch size")
                        lo_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                        lo_res = gr.Number(label="Resolution (0: the model's)", value=0, precision=0, minimum=0)
                    with gr.Row():
                        lo_sample_every = gr.Number(label="Sample every N steps (0: off)", value=0, precision=0,
                                                    minimum=0)
                        lo_sample_prompts = gr.Textbox(label="Sample prompts (one a line)", lines=2)
                    with gr.Row():
                        lo_train = gr.Button("Train", variant="primary", elem_id="train_lora_start")
                        lo_stop = gr.Button("Stop", variant="stop", elem_id="train_lora_stop")
                with gr.Column():
                    lo_status = gr.HTML("", elem_id="train_lora_status")
                    lo_speed = gr.Markdown("", elem_id="train_lora_speed")
                    lo_plot = gr.Image(label="Loss", type="pil", interactive=False, elem_id="train_lora_loss")
                    lo_samples = gr.Gallery(label="Samples", columns=4, height=320, elem_id="train_lora_samples")
        with gr.Tab("Textual inversion", id="train_ti"):
            with gr.Row():
                with gr.Column():
                    ti_ckpt = gr.Dropdown(titles, value=active_title(ctx), label="Base checkpoint",
                                          elem_id="train_ti_checkpoint")
                    ti_folder = gr.Textbox(label="Dataset folder (under the data dir or an --allowed-dir)",
                                           elem_id="train_ti_folder")
                    ti_files = gr.File(label="…or upload images", file_count="multiple", file_types=["image", ".txt"],
                                       type="filepath", elem_id="train_ti_files")
                    with gr.Row():
                        ti_name = gr.Textbox(label="Embedding name (the word used in prompts)", value="my-embedding",
                                             elem_id="train_ti_name")
                        ti_init = gr.Textbox(label="Initialization text", value="*")
                        ti_vectors = gr.Slider(1, 16, value=1, step=1, label="Vectors per token")
                    ti_template = gr.Textbox(label="Caption template ({token}: the embedding; {filewords}: .txt)",
                                             value="a photo of {token}")
                    with gr.Row():
                        ti_steps = gr.Number(label="Steps", value=300, precision=0, minimum=1)
                        ti_lr = gr.Number(label="Learning rate", value=5e-3)
                        ti_batch = gr.Slider(1, 16, value=1, step=1, label="Batch size")
                        ti_seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                        ti_res = gr.Number(label="Resolution (0: the model's)", value=0, precision=0, minimum=0)
                    with gr.Row():
                        ti_train = gr.Button("Train", variant="primary", elem_id="train_ti_start")
                        ti_stop = gr.Button("Stop", variant="stop", elem_id="train_ti_stop")
                with gr.Column():
                    ti_status = gr.HTML("", elem_id="train_ti_status")
                    ti_speed = gr.Markdown("", elem_id="train_ti_speed")
                    ti_plot = gr.Image(label="Loss", type="pil", interactive=False, elem_id="train_ti_loss")
                    ti_samples = gr.Gallery(visible=False)
        with gr.Tab("Sessions", id="train_sessions") as sessions_tab:
            table = gr.Dataframe(headers=SESSION_COLUMNS, value=None, interactive=False, elem_id="train_sessions_table")
            with gr.Row():
                picked = gr.Dropdown([], label="Session", elem_id="train_sessions_pick", scale=3)
                refresh = gr.Button("Refresh", scale=0, min_width=90)
                resume_button = gr.Button("Resume", variant="primary", scale=0, min_width=90)
                delete_button = gr.Button("Delete", variant="stop", scale=0, min_width=90)
            session_status = gr.HTML("", elem_id="train_sessions_status")

    def stop_embedding(name: str) -> str:
        from modules.training.sessions import stop

        count = stop(ctx, "embedding", (name or "").strip())
        return status_html("Stopping: the session keeps its last state" if count else "No training of that name runs",
                           "ok" if count else "warn")

    ds_inputs = [ds_files, ds_folder, ds_size, ds_template, ds_token, ds_faces]
    ds_preview.click(prepare_preview, inputs=ds_inputs, outputs=[ds_grid, ds_status], api_visibility="private")
    ds_write.click(prepare_write, inputs=[*ds_inputs, ds_name], outputs=[ds_status, lo_folder],
                   api_visibility="private")
    lo_train.click(train_lora, inputs=[lo_ckpt, lo_folder, lo_files, lo_name, lo_prompt, lo_rank, lo_alpha, lo_steps,
                                       lo_lr, lo_batch, lo_seed, lo_res, lo_sample_every, lo_sample_prompts,
                                       lo_targets, lo_te_lr, lo_devices],
                   outputs=[lo_status, lo_plot, lo_speed, lo_samples], api_visibility="private",
                   concurrency_limit=None, show_progress="hidden")
    lo_stop.click(stop_lora, inputs=[lo_name], outputs=[lo_status], api_visibility="private", queue=False)
    ti_train.click(train_embedding, inputs=[ti_ckpt, ti_folder, ti_files, ti_name, ti_init, ti_vectors, ti_template,
                                            ti_steps, ti_lr, ti_batch, ti_seed, ti_res],
                   outputs=[ti_status, ti_plot, ti_speed, ti_samples], api_visibility="private",
                   concurrency_limit=None, show_progress="hidden")
    ti_stop.click(stop_embedding, inputs=[ti_name], outputs=[ti_status], api_visibility="private", queue=False)
    session_outputs = [table, picked]
    refresh.click(sessions, outputs=session_outputs, api_visibility="private")
    sessions_tab.select(sessions, outputs=session_outputs, api_visibility="private")
    resume_button.click(resume, inputs=[picked], outputs=[session_status, *session_outputs], api_visibility="private")
    delete_button.click(delete, inputs=[picked], outputs=[session_status, *session_outputs], api_visibility="private")
    return TrainTab(prepare_preview, prepare_write, train_lora, stop_lora, train_embedding, sessions, resume, delete)
