"""The Train tab's DreamBooth section: base checkpoint, instance images, instance and class prompts, prior
preservation, text encoder (off, together, two stages), memory and precision options, Train and Stop.

Thin: the handler builds a :class:`~modules.training.dreambooth.request.TrainDreamboothRequest` and submits
it (:func:`modules.jobs.submit.submit_job`); the progress (class images first, then training), the loss
curve, steps/s, ETA and the sample images follow the job as for LoRA (:func:`webui.train_tab.follow_training`).
The same job runs over the native API (``POST /api/v1/jobs`` with ``kind: "train_dreambooth"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import gradio as gr

from webui.common import active_title, owner_of, readable, status_html
from webui.train_tab import _checkpoint_name, _dataset_path, _files, follow_training

if TYPE_CHECKING:
    from modules.app_context import AppContext

TEXT_ENCODER_CHOICES = [("Off (UNet only)", "off"), ("Together with the UNet", "together"),
                        ("Two stages: text encoder first, then UNet", "two_stage")]
PRECISION_CHOICES = [("Auto (bf16 where the device has it)", "auto"), ("bf16", "bf16"), ("fp32", "no")]
EXPORT_CHOICES = [("Single file (.safetensors)", "single_file"), ("Diffusers folder", "diffusers"),
                  ("Both", "both")]


@dataclass
class DreamboothSection:
    """The section's handlers (the tests call them as the page's events do)."""

    train: Callable[..., Iterator[tuple[Any, ...]]]
    stop: Callable[..., Any]


def dreambooth_request(ctx: "AppContext", *, checkpoint: str | None, folder: str, uploads: Any, name: str,
                       instance_prompt: str, prior: bool, class_prompt: str, class_images: float,
                       class_steps: float, prior_weight: float, text_encoder: str, te_steps: float, te_lr: float,
                       steps: float, lr: float, batch: float, seed: float, resolution: float, grad_ckpt: bool,
                       precision: str, adam8: bool, ema: float, sample_every: float, sample_prompts: str,
                       export_format: str = "single_file") -> Any:
    """The typed request the section's fields describe (fields that do not apply are left out, not sent)."""
    from modules.training.dreambooth.request import TrainDreamboothRequest

    dataset = _dataset_path(ctx, folder, _files(uploads), (name or "").strip())
    values: dict[str, Any] = dict(
        name=name, checkpoint=_checkpoint_name(ctx, checkpoint), dataset=dataset, instance_prompt=instance_prompt,
        train_text_encoder=text_encoder or "off", steps=int(steps), learning_rate=float(lr), batch_size=int(batch),
        seed=int(seed), resolution=int(resolution or 0) or None, gradient_checkpointing=bool(grad_ckpt),
        mixed_precision=precision or "auto", use_8bit_adam=bool(adam8), ema_decay=float(ema) if ema else None,
        sample_every=int(sample_every or 0),
        sample_prompts=[p for p in (sample_prompts or "").splitlines() if p.strip()],
        export_format=export_format or "single_file")
    if prior:
        values.update(class_prompt=class_prompt, num_class_images=int(class_images),
                      class_steps=int(class_steps), prior_loss_weight=float(prior_weight))
    else:
        values.update(num_class_images=0)
    if text_encoder == "two_stage":
        values["text_encoder_steps"] = int(te_steps)
    if text_encoder in ("together", "two_stage") and te_lr:
        values["text_encoder_lr"] = float(te_lr)
    return TrainDreamboothRequest(**values)


def build_dreambooth_tab(ctx: "AppContext", titles: list[str]) -> DreamboothSection:
    """The DreamBooth sub-tab (inside the Train tab's tabs)."""
    with gr.Tab("DreamBooth", id="train_dreambooth"):
        with gr.Row():
            with gr.Column():
                ckpt = gr.Dropdown(titles, value=active_title(ctx), label="Base checkpoint",
                                   elem_id="train_db_checkpoint")
                folder = gr.Textbox(label="Instance images folder (under the data dir or an --allowed-dir)",
                                    elem_id="train_db_folder")
                uploads = gr.File(label="…or upload 4-20 images", file_count="multiple", file_types=["image", ".txt"],
                                  type="filepath", elem_id="train_db_files")
                with gr.Row():
                    name = gr.Textbox(label="Checkpoint name", value="my-dreambooth", elem_id="train_db_name")
                    instance_prompt = gr.Textbox(label="Instance prompt (rare token + class)", value="a sks shape",
                                                 elem_id="train_db_instance_prompt")
                with gr.Row():
                    prior = gr.Checkbox(label="Prior preservation (class images)", value=True,
                                        elem_id="train_db_prior")
                    class_prompt = gr.Textbox(label="Class prompt (several: one a line, cycled)", value="a shape",
                                              lines=1, max_lines=8, elem_id="train_db_class_prompt")
                    class_images = gr.Number(label="Class images (made once by the base model)", value=50,
                                             precision=0, minimum=1, maximum=1000, elem_id="train_db_class_images")
                    class_steps = gr.Number(label="Class image sampling steps", value=20, precision=0, minimum=1,
                                            maximum=150, elem_id="train_db_class_steps")
                    prior_weight = gr.Number(label="Prior loss weight", value=1.0, minimum=0,
                                             elem_id="train_db_prior_weight")
                with gr.Row():
                    text_encoder = gr.Dropdown(TEXT_ENCODER_CHOICES, value="off", label="Train the text encoder",
                                               elem_id="train_db_text_encoder")
                    te_steps = gr.Number(label="Text encoder steps (two stages)", value=100, precision=0, minimum=1)
                    te_lr = gr.Number(label="Text encoder learning rate (0: same)", value=0, minimum=0)
                with gr.Row():
                    steps = gr.Number(label="Steps", value=400, precision=0, minimum=1, elem_id="train_db_steps")
                    lr = gr.Number(label="Learning rate", value=5e-6, elem_id="train_db_lr")
                    batch = gr.Slider(1, 16, value=1, step=1, label="Batch size")
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                    resolution = gr.Number(label="Resolution (0: the model's)", value=0, precision=0, minimum=0)
                with gr.Row():
                    grad_ckpt = gr.Checkbox(label="Gradient checkpointing", value=False)
                    precision = gr.Dropdown(PRECISION_CHOICES, value="auto", label="Mixed precision")
                    adam8 = gr.Checkbox(label="8-bit Adam (CUDA + bitsandbytes)", value=False)
                    ema = gr.Number(label="EMA decay (0: off)", value=0, minimum=0, maximum=0.99999)
                    export_format = gr.Dropdown(EXPORT_CHOICES, value="single_file", label="Export as",
                                                elem_id="train_db_export_format")
                with gr.Row():
                    sample_every = gr.Number(label="Sample every N steps (0: off)", value=0, precision=0, minimum=0)
                    sample_prompts = gr.Textbox(label="Sample prompts (one a line)", lines=2)
                with gr.Row():
                    train_button = gr.Button("Train", variant="primary", elem_id="train_db_start")
                    stop_button = gr.Button("Stop", variant="stop", elem_id="train_db_stop")
            with gr.Column():
                status = gr.HTML("", elem_id="train_db_status")
                speed = gr.Markdown("", elem_id="train_db_speed")
                plot = gr.Image(label="Loss", type="pil", interactive=False, elem_id="train_db_loss")
                samples = gr.Gallery(label="Samples", columns=4, height=320, elem_id="train_db_samples")

    def train(checkpoint: str, folder_: str, uploads_: Any, name_: str, instance_prompt_: str, prior_: bool,
              class_prompt_: str, class_images_: float, class_steps_: float, prior_weight_: float,
              text_encoder_: str, te_steps_: float, te_lr_: float, steps_: float, lr_: float, batch_: float,
              seed_: float, resolution_: float, grad_ckpt_: bool, precision_: str, adam8_: bool, ema_: float,
              sample_every_: float, sample_prompts_: str, export_format_: str = "single_file",
              request: gr.Request | None = None
              ) -> Iterator[tuple[Any, ...]]:
        from modules.jobs.submit import submit_job
        from webui.progress import bar_html

        try:
            req = dreambooth_request(
                ctx, checkpoint=checkpoint, folder=folder_, uploads=uploads_, name=name_,
                instance_prompt=instance_prompt_, prior=prior_, class_prompt=class_prompt_,
                class_images=class_images_, class_steps=class_steps_, prior_weight=prior_weight_,
                text_encoder=text_encoder_, te_steps=te_steps_, te_lr=te_lr_, steps=steps_, lr=lr_, batch=batch_,
                seed=seed_, resolution=resolution_, grad_ckpt=grad_ckpt_, precision=precision_, adam8=adam8_,
                ema=ema_, sample_every=sample_every_, sample_prompts=sample_prompts_, export_format=export_format_)
            job = submit_job(ctx, req, owner=owner_of(request), source="webui")
        except Exception as exc:  # noqa: BLE001 - a refused request is said in the page
            yield bar_html("failed", 1.0, f"Not started: {ctx.paths.scrub(readable(exc))}"), None, "", []
            return
        yield from follow_training(ctx, job, ctx.paths.data_dir / "training" / "dreambooth" / req.name, req.steps)

    def stop(name_: str) -> str:
        from modules.training.sessions import stop as stop_session

        count = stop_session(ctx, "dreambooth", (name_ or "").strip())
        return status_html("Stopping: the session keeps its last state" if count else "No training of that name runs",
                           "ok" if count else "warn")

    inputs = [ckpt, folder, uploads, name, instance_prompt, prior, class_prompt, class_images, class_steps,
              prior_weight, text_encoder, te_steps, te_lr, steps, lr, batch, seed, resolution, grad_ckpt, precision,
              adam8, ema, sample_every, sample_prompts, export_format]
    train_button.click(train, inputs=inputs, outputs=[status, plot, speed, samples], api_visibility="private",
                       concurrency_limit=None, show_progress="hidden")
    stop_button.click(stop, inputs=[name], outputs=[status], api_visibility="private", queue=False)
    return DreamboothSection(train, stop)
