"""DreamBooth (issue 27 point 2) on tiny SD 1.x: the prior-preservation loss uses the class images, a stopped
and resumed run equals a straight one (text encoder in two stages, EMA), the single-file export loads back
with the trained weights in the original layout, and the ``train_dreambooth`` job makes its class images
once through a queued generation job, reuses them, and lists its checkpoint."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
import torch
from PIL import Image

from modules.jobs.progress import JobControl
from modules.models.loader import LoadOptions, load_model
from modules.training.dreambooth.request import TrainDreamboothRequest
from modules.training.dreambooth.trainer import DreamboothRun, encode_batch, train
from modules.training.lora.dataset import load_dataset
from modules.training.lora.session import Session


def _images(folder: Path, colour: tuple[int, int, int], count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        picture = Image.new("RGB", (64, 64), (30 + 60 * i, 160, 90))
        picture.paste(colour, (12 + 8 * i, 14, 44, 46))
        picture.save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dreambooth")
    return {"root": root, "instances": _images(root / "instances", (240, 30, 30)),
            "classes": _images(root / "classes", (30, 30, 240)), "others": _images(root / "others", (240, 240, 30))}


def _model(tiny_model, model_cache_dir: Path):
    model = load_model(tiny_model("sd1"), LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    return model


def _req(name: str = "db", **extra) -> TrainDreamboothRequest:
    values = dict(name=name, dataset="instances", class_prompt="a shape", num_class_images=2, steps=4,
                  learning_rate=1e-3, checkpoint_every=2, seed=3)
    values.update(extra)
    return TrainDreamboothRequest(**values)


def _data(folders: dict[str, Path], classes: str = "classes"):
    root = folders["root"]
    return (load_dataset(folders["instances"], [root], 64, "a sks shape"),
            load_dataset(folders[classes], [root], 64, "a shape"))


def _grads(run: DreamboothRun, weight: float) -> torch.Tensor:
    run.optimizer.zero_grad(set_to_none=True)
    run.loss(0, prior_loss_weight=weight).loss.backward()
    return torch.cat([p.grad.flatten() for p in run.unet.parameters() if p.grad is not None])


def test_the_prior_loss_uses_the_class_images(tiny_model, model_cache_dir, folders) -> None:
    model = _model(tiny_model, model_cache_dir)
    instances, classes = _data(folders)
    _, others = _data(folders, "others")
    req = _req()
    with_classes = DreamboothRun(req, model, encode_batch(model, instances, classes, req.seed))
    g0, g1 = _grads(with_classes, 0.0), _grads(with_classes, 1.0)
    assert (g1 - g0).abs().max() > 1e-4  # weight 1 adds the class images' gradient
    swapped = DreamboothRun(req, model, encode_batch(model, instances, others, req.seed))
    s0, s1 = _grads(swapped, 0.0), _grads(swapped, 1.0)
    assert torch.allclose(s0, g0, atol=1e-6)  # weight 0: the class images do not count
    assert (s1 - g1).abs().max() > 1e-4  # weight 1: other class images, another gradient
    alone = DreamboothRun(_req(num_class_images=0, class_prompt=None), model,
                          encode_batch(model, instances, [], req.seed))
    assert torch.allclose(_grads(alone, 1.0), g0, atol=1e-5)  # weight 0 == no prior preservation
    record = with_classes.loss(0)
    assert record.prior is not None and record.prior > 0


def test_a_stopped_and_resumed_run_equals_a_straight_run(tiny_model, model_cache_dir, folders) -> None:
    instances, classes = _data(folders)
    data = folders["root"] / "data"
    straight = _req("straight", train_text_encoder="two_stage", text_encoder_steps=1, ema_decay=0.5,
                    sample_every=3, sample_steps=1, resolution=64)
    model = _model(tiny_model, model_cache_dir)
    base_te = {k: v.clone() for k, v in model.pipeline.text_encoder.state_dict().items()}
    assert train(straight, model, instances, classes, Session.in_folder(data / "straight", straight),
                 JobControl()).last_step == 4
    expected = {**{f"unet.{k}": v for k, v in model.pipeline.unet.state_dict().items()},
                **{f"te.{k}": v for k, v in model.pipeline.text_encoder.state_dict().items()}}
    assert any((expected[f"te.{k}"] - v).abs().max() > 0 for k, v in base_te.items())  # stage 1 trained the TE

    assert [p.name for p in (data / "straight" / "samples").iterdir()] == ["000003-0.png"]

    resumed = straight.model_copy(update={"name": "resumed", "sample_every": 0})  # samples do not change training
    session = Session.in_folder(data / "resumed", resumed)
    control = JobControl()

    def stop(step: int, loss: float) -> None:
        if step == 2:
            control.cancel_event.set()

    first = train(resumed, _model(tiny_model, model_cache_dir), instances, classes, session, control,
                  on_log=stop)
    assert first.stopped and first.last_step == 2
    model = _model(tiny_model, model_cache_dir)  # a new process: a fresh base model
    second = train(resumed, model, instances, classes, Session.in_folder(data / "resumed", resumed), JobControl())
    assert second.last_step == 4 and second.steps_done == 2
    got = {**{f"unet.{k}": v for k, v in model.pipeline.unet.state_dict().items()},
           **{f"te.{k}": v for k, v in model.pipeline.text_encoder.state_dict().items()}}
    assert got.keys() == expected.keys()
    assert max(float((got[k].float() - expected[k].float()).abs().max()) for k in got) <= 1e-6
    log = session.losses()
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all("prior" in r for r in log)
    assert [r["stage"] for r in log] == ["text encoder", "UNet", "UNet", "UNet"]


def test_the_export_loads_with_the_trained_weights(tiny_model, model_cache_dir, folders) -> None:
    from safetensors import safe_open

    from modules.training.dreambooth.export import write_checkpoint

    instances, classes = _data(folders)
    req = _req("export", steps=2, train_text_encoder="together")
    model = _model(tiny_model, model_cache_dir)
    train(req, model, instances, classes, Session.in_folder(folders["root"] / "data" / "export", req), JobControl())
    path = write_checkpoint(folders["root"] / "out" / "export.safetensors", model, dtype="float32",
                            metadata={"atelier_recipe": req.model_dump(mode="json")})
    with safe_open(str(path), "pt") as handle:
        keys, meta = list(handle.keys()), handle.metadata()
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("first_stage_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    assert '"train_text_encoder": "together"' in meta["atelier_recipe"]
    loaded = load_model(path, LoadOptions(cache_dir=model_cache_dir))
    for name in ("unet", "text_encoder", "vae"):
        trained, back = getattr(model.pipeline, name).state_dict(), getattr(loaded.pipeline, name).state_dict()
        assert set(back) <= set(trained) and len(back) >= len(trained) - 1, name
        assert max(float((trained[k] - back[k]).abs().max()) for k in back) == 0.0, name
    # the diffusers folder, made from that file by the converter: the same trained weights
    from modules.training.dreambooth.export import diffusers_folder_for, write_diffusers

    folder = write_diffusers(diffusers_folder_for(path), path, cache_dir=model_cache_dir, dtype="float32",
                             metadata={"atelier_recipe": req.model_dump(mode="json")})
    assert folder.name == "export-diffusers" and (folder / "model_index.json").is_file()
    again = load_model(folder, LoadOptions(cache_dir=model_cache_dir))
    trained, back = model.pipeline.unet.state_dict(), again.pipeline.unet.state_dict()
    assert set(back) == set(trained) and max(float((trained[k] - back[k]).abs().max()) for k in back) == 0.0


def test_refusals_are_clear() -> None:
    from pydantic import ValidationError

    from modules.training.dreambooth.options import check_8bit_adam
    from modules.training.lora.errors import TrainingError

    with pytest.raises(ValidationError, match="class_prompt is needed"):
        TrainDreamboothRequest(name="x", dataset="d")
    with pytest.raises(ValidationError, match="text_encoder_steps must be"):
        _req(train_text_encoder="two_stage", text_encoder_steps=4)
    with pytest.raises(ValidationError, match="text_encoder_lr is used only"):
        _req(text_encoder_lr=1e-6)
    with pytest.raises(ValidationError, match="class_steps are used only with class images"):
        _req(num_class_images=0, class_prompt=None, class_steps=5)
    with pytest.raises(TrainingError, match="CUDA GPU only.*turn use_8bit_adam off"):
        check_8bit_adam("cpu")


def test_train_dreambooth_job_makes_class_images_once_and_lists_its_checkpoint(studio_factory) -> None:
    from modules.jobs.model import JobState
    from modules.training.dreambooth.class_images import existing
    from webui.train_dreambooth import build_dreambooth_tab
    from webui.common import checkpoint_titles

    srv = studio_factory(("--nowebui",), prepare=lambda data, ckpt: _images(data / "train" / "subject", (240, 30, 30)))
    ctx = srv.ctx
    # over the native job API: refused with the reason, then run (the fields the page sets, as it sets them)
    req = _req("subject", dataset="train/subject", steps=2, resolution=64, class_steps=2)
    with srv.client() as http:
        body = {"kind": "train_dreambooth", "request": req.model_dump(mode="json")}
        refused = http.post("/api/v1/jobs", json={**body, "request": {**body["request"], "use_8bit_adam": True}})
        assert 400 <= refused.status_code < 500 and "CUDA GPU only" in refused.text
        made = http.post("/api/v1/jobs", json=body)
        assert made.status_code < 300, made.text
    job = ctx.queue.wait(made.json()["id"], 300)
    assert job.state is JobState.SUCCEEDED, job.error
    generations = [j for j in ctx.queue.jobs() if j.kind == "txt2img" and j.source == "train_dreambooth"]
    assert len(generations) == 1 and generations[0].owner == job.owner
    assert job.result["class_images_generated"] == 2 and job.result["class_images"] == 2
    session = ctx.paths.data_dir / "training" / "dreambooth" / "subject"
    folders = list((session / "class_images").iterdir())
    assert len(folders) == 1 and len(existing(folders[0])) == 2
    assert ctx.catalog.find("subject") is not None and job.result["checkpoint"].endswith("subject.safetensors")

    # the Train tab's DreamBooth section: the same session trained further, its class images reused
    with gr.Blocks():
        section = build_dreambooth_tab(ctx, checkpoint_titles(ctx))
    fields = dict(checkpoint=None, folder="train/subject", uploads=None, name="subject",
                  instance_prompt="a sks shape", prior=True, class_prompt="a shape", class_images=2, class_steps=2,
                  prior_weight=1.0, text_encoder="off", te_steps=1, te_lr=0, steps=3, lr=1e-3, batch=1, seed=3,
                  resolution=64, grad_ckpt=False, precision="auto", adam8=False, ema=0, sample_every=0,
                  sample_prompts="", export_format="both")
    refused = list(section.train(*{**fields, "adam8": True}.values()))
    assert "Not started" in refused[-1][0] and "CUDA GPU only" in refused[-1][0]
    ticks = list(section.train(*fields.values()))
    again = [j for j in ctx.queue.jobs() if j.kind == "train_dreambooth"][-1]
    assert again.state is JobState.SUCCEEDED, again.error
    assert "Done: 3 steps" in ticks[-1][0] and ticks[-1][1] is not None  # status and the loss plot
    assert again.result["class_images_generated"] == 0 and again.result["steps"] == 3
    assert len([j for j in ctx.queue.jobs() if j.kind == "txt2img" and j.source == "train_dreambooth"]) == 1
    # exported as both: the single file and the diffusers folder (made by the converter), both listed at once
    import json

    assert again.result["checkpoint"].endswith("subject.safetensors")
    assert again.result["diffusers_folder"].endswith("subject-diffusers")
    listed = ctx.catalog.find("subject-diffusers")
    assert listed is not None and listed.is_folder and (listed.path / "unet").is_dir()
    recipe = json.loads((listed.path / "atelier_training.json").read_text())
    assert recipe["atelier_recipe"]["steps"] == 3 and recipe["atelier_recipe"]["export_format"] == "both"


def test_several_class_prompts_cycle_and_caption_their_images(tmp_path) -> None:
    import threading
    from types import SimpleNamespace

    from modules.jobs.model import JobState
    from modules.training.dreambooth.class_images import ensure_class_images, existing

    asked = []

    def submit(ctx, gen, **kw):  # a generation job that has finished: one flat image per picture asked
        asked.append((gen.prompt, gen.seed, gen.n_iter))
        done = threading.Event()
        done.set()
        images = [Image.new("RGB", (8, 8), (gen.seed % 256, 0, 0)) for _ in range(gen.n_iter)]
        return SimpleNamespace(id="x" * 8, done=done, state=JobState.SUCCEEDED, result=SimpleNamespace(images=images))

    req = _req(class_prompt="a red circle\n\n a blue square ", num_class_images=3)
    assert req.class_prompts() == ["a red circle", "a blue square"]
    job = SimpleNamespace(owner="t")
    folder, made = ensure_class_images(None, job, JobControl(), req, "base", tmp_path, submit=submit)
    assert made == 3 and asked == [("a red circle", 3, 1), ("a blue square", 4, 1), ("a red circle", 5, 1)]
    captions = [p.with_suffix(".txt").read_text() for p in existing(folder)]
    assert captions == ["a red circle", "a blue square", "a red circle"]
    assert ensure_class_images(None, job, JobControl(), req, "base", tmp_path, submit=submit)[1] == 0  # reused
    single = _req(num_class_images=3)
    other, made = ensure_class_images(None, job, JobControl(), single, "base", tmp_path, submit=submit)
    assert made == 3 and asked[-1] == ("a shape", 3, 3)  # one prompt: one job with consecutive seeds
    assert other != folder and not list(other.glob("*.txt"))  # its own folder; the class prompt is the caption
