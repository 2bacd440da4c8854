"""img2img on tiny random-weight models: denoising strength, resize modes, A1111 seeds and infotext,
saving, folder batch, the extension hook, FLUX and SDXL-refiner checkpoints."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.generation.addons.hooks import SamplingContext
from modules.generation.runners.img2img import encode_request_image, precheck_img2img, run_img2img
from modules.generation.runners.img2img_batch import run_img2img_batch
from modules.generation.sampling.latent_codec import decode_latents, derived_pipeline, encode_images
from modules.generation.requests import Img2ImgBatchRequest, Img2ImgRequest
from modules.generation.results import OutputOptions
from modules.generation.validation import InvalidRequestError
from modules.images.resize import resize_image
from modules.jobs.progress import JobControl
from modules.models.catalog import CheckpointInfo
from modules.models.loader import LoadOptions, load_model
from modules.models.manager import ActiveModel


def load_active(path: Path, cache: Path) -> ActiveModel:
    model = load_model(path, LoadOptions(cache_dir=cache))
    model.pipeline.set_progress_bar_config(disable=True)
    return ActiveModel(info=CheckpointInfo(path, path.name, path.is_dir()), model=model, sha256="ab" * 32,
                       load_seconds=0)


@pytest.fixture(scope="module")
def sd1(tiny_checkpoints, model_cache_dir: Path) -> ActiveModel:
    return load_active(tiny_checkpoints["sd1"]["single"], model_cache_dir)


def noise_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def run(active: ActiveModel, tmp_path: Path, image: Image.Image | None = None, *, control: JobControl | None = None,
        save: bool = False, **kw):
    args = dict(prompt="a red circle", negative_prompt="lowres", steps=4, seed=5, sampler_name="Euler",
                denoising_strength=0.5, init_images=[encode_request_image(image or noise_image())])
    args.update(kw)
    return run_img2img(Img2ImgRequest(**args), active, control or JobControl(),
                       OutputOptions(save=save, outdir=tmp_path))


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def test_strength_zero_is_the_vae_round_trip(sd1, tmp_path) -> None:
    init = noise_image()
    result = run(sd1, tmp_path, init, denoising_strength=0.0)
    pipe = derived_pipeline(sd1.model, "img2img")
    round_trip = decode_latents(pipe, encode_images(pipe, [init]))[0]
    assert result.images[0].tobytes() == round_trip.tobytes()
    assert "Denoising strength: 0.0" in result.infotexts[0]


def test_lower_strength_stays_closer_to_the_init_image(sd1, tmp_path) -> None:
    init = noise_image(seed=3)
    pipe = derived_pipeline(sd1.model, "img2img")
    reference = px(decode_latents(pipe, encode_images(pipe, [init]))[0])
    # one step at the lowest noise level against the whole schedule (on random weights the steps between
    # are not ordered reliably: the step count and start level are checked below)
    errors = [np.mean((px(run(sd1, tmp_path, init, denoising_strength=s, steps=10).images[0]) - reference) ** 2)
              for s in (0.05, 1.0)]
    assert errors[0] < errors[1]


@pytest.mark.parametrize(("strength", "steps", "calls"), [(0.05, 10, 1), (0.25, 4, 2), (0.5, 4, 3), (0.75, 20, 16),
                                                          (1.0, 4, 4)])
def test_img2img_runs_a1111s_step_count(sd1, tmp_path, strength, steps, calls) -> None:
    """A1111's sample_img2img: t_enc = int(min(strength, 0.999) * steps), and t_enc + 1 steps run from the
    schedule's level steps - t_enc - 1 (diffusers alone would run int(strength * steps))."""
    seen: list[float] = []
    handle = sd1.model.pipeline.unet.register_forward_hook(lambda module, args, out: seen.append(float(args[1].flatten()[0])))
    try:
        result = run(sd1, tmp_path, denoising_strength=strength, steps=steps)
    finally:
        handle.remove()
    assert len(seen) == calls and "Steps: %d," % steps in result.infotexts[0]


def test_seeds_batches_and_determinism(sd1, tmp_path) -> None:
    a = run(sd1, tmp_path, seed=40, batch_size=2, n_iter=2)
    assert a.seeds == [40, 41, 42, 43]
    b = run(sd1, tmp_path, seed=42)
    assert a.images[2].tobytes() == b.images[0].tobytes()
    assert run(sd1, tmp_path, seed=42).images[0].tobytes() == b.images[0].tobytes()
    assert "Seed: 42," in b.infotexts[0] and "Denoising strength: 0.5" in b.infotexts[0]
    assert b.images[0].info["parameters"] == b.infotexts[0]


def test_prompt_editing_spans_the_steps_that_run(sd1, tmp_path) -> None:
    def image(prompt: str) -> np.ndarray:
        return px(run(sd1, tmp_path, prompt=prompt, steps=6).images[0])

    cat, dog = image("a cat"), image("a dog")
    edited = image("a [cat:dog:0.5]")  # 3 of 6 steps run; the switch is scheduled over those 3
    assert np.abs(edited - cat).max() > 0 and np.abs(edited - dog).max() > 0


def test_several_init_images_form_one_batch(sd1, tmp_path) -> None:
    images = [encode_request_image(noise_image(seed=s)) for s in (1, 2)]
    result = run(sd1, tmp_path, init_images=images, batch_size=2)
    assert result.seeds == [5, 6] and len(result.images) == 2
    with pytest.raises(InvalidRequestError, match="too many init images"):
        run(sd1, tmp_path, init_images=images, batch_size=1)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_every_resize_mode_gives_the_requested_size(sd1, tmp_path, mode: int) -> None:
    result = run(sd1, tmp_path, noise_image(96, 48), resize_mode=mode, width=64, height=64)
    assert result.images[0].size == (64, 64)
    assert "Size: 64x64" in result.infotexts[0]


def test_resize_mode_geometry() -> None:
    wide = Image.new("RGB", (80, 40), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 10, 40))  # blue left band
    stretched = resize_image(0, wide, 64, 64)
    assert stretched.size == (64, 64) and stretched.getpixel((2, 32))[2] > 200
    cropped = resize_image(1, wide, 64, 64)  # covers 64x64: scaled to 128x64, centre-cropped
    assert cropped.size == (64, 64) and cropped.getpixel((2, 32))[0] > 200  # blue band cropped away
    filled = resize_image(2, wide, 64, 64)  # fits 64x32, centred, bands above/below stretched from edges
    assert filled.size == (64, 64)
    assert np.abs(px(filled)[0] - px(filled)[16]).max() < 40  # top band repeats the image's top row
    tall_fill = resize_image(2, Image.new("RGB", (20, 80), (0, 255, 0)), 64, 64)
    assert tall_fill.getpixel((0, 32)) == (0, 255, 0)  # left band filled from the image's edge column
    with pytest.raises(ValueError, match="resize_mode"):
        resize_image(4, wide, 64, 64)


def test_default_size_follows_the_init_image(sd1, tmp_path) -> None:
    result = run(sd1, tmp_path, noise_image(70, 50), width=None, height=None)
    assert result.images[0].size == (72, 64) and result.width == 72  # 50 is below the 64 minimum


def test_clear_refusals(sd1, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="Init image not found"):
        run(sd1, tmp_path, init_images=[])
    with pytest.raises(InvalidRequestError, match="init image 1"):
        run(sd1, tmp_path, init_images=["not base64!"])
    with pytest.raises(InvalidRequestError, match="variation seeds"):
        run(sd1, tmp_path, subseed_strength=0.3)
    with pytest.raises(ValueError, match="initial_noise_multiplier"):
        Img2ImgRequest(initial_noise_multiplier=1.2)


def test_precheck_refuses_before_queueing(sd1) -> None:
    good = Img2ImgRequest(init_images=[encode_request_image(noise_image())], width=64, height=64)
    precheck_img2img(good, sd1.model)
    precheck_img2img(good, None)
    with pytest.raises(InvalidRequestError, match="Init image not found"):
        precheck_img2img(Img2ImgRequest(), sd1.model)
    with pytest.raises(InvalidRequestError, match="mask"):
        precheck_img2img(good.model_copy(update={"mask": "%%%"}), sd1.model)
    with pytest.raises(InvalidRequestError, match="multiple of 8"):
        precheck_img2img(good.model_copy(update={"width": 70}), sd1.model)
    with pytest.raises(InvalidRequestError, match="unsupported extra network"):
        precheck_img2img(good.model_copy(update={"prompt": "<lora:a:1>"}), sd1.model)
    precheck_img2img(good.model_copy(update={"prompt": "<lora:a:1>"}), sd1.model, handled_kinds=("lora",))


def test_saves_under_img2img_date_folder(sd1, tmp_path) -> None:
    result = run(sd1, tmp_path / "img2img-images", save=True)
    path = result.paths[0]
    assert path is not None and path.parent.parent == tmp_path / "img2img-images"
    assert path.name.endswith(f"-{result.seeds[0]}.png")
    assert Image.open(path).info["parameters"] == result.infotexts[0]


def test_progress_counts_the_steps_that_run(sd1, tmp_path) -> None:
    control = JobControl()
    run(sd1, tmp_path, control=control, steps=10, denoising_strength=0.3)
    assert control.progress.total_steps == 4 and control.progress.step == 4  # A1111: int(0.3 * 10) + 1


def test_hook_wraps_every_call_and_adds_infotext(sd1, tmp_path) -> None:
    seen: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def hook(ctx: SamplingContext):
        seen.append(("enter", ctx.task))
        ctx.infotext_params["Test hook"] = "on"
        ctx.call_kwargs["guidance_scale"] = 1.0
        yield
        seen.append(("exit", ctx.task))

    plain = run(sd1, tmp_path, cfg_scale=1.0)
    hooked = run_img2img(Img2ImgRequest(prompt="a red circle", negative_prompt="lowres", steps=4, seed=5,
                                        sampler_name="Euler", denoising_strength=0.5, n_iter=2, cfg_scale=7.0,
                                        init_images=[encode_request_image(noise_image())]),
                         sd1, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=[hook])
    assert seen == [("enter", "img2img"), ("exit", "img2img")] * 2
    assert "Test hook: on" in hooked.infotexts[0]
    assert hooked.images[0].tobytes() == plain.images[0].tobytes()  # the hook's guidance_scale was used


def test_extra_network_tags_need_a_hook(sd1, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="lora:x"):
        run(sd1, tmp_path, prompt="a cat <lora:x:0.5>")

    @contextlib.contextmanager
    def lora(ctx: SamplingContext):
        assert [c.kind for c in ctx.extra_networks] == ["lora"] and "<lora" not in ctx.prompts[0]
        yield

    lora.extra_network_kinds = ("lora",)  # type: ignore[attr-defined]
    result = run_img2img(Img2ImgRequest(prompt="a cat <lora:x:0.5>", steps=2, denoising_strength=0.5,
                                        init_images=[encode_request_image(noise_image())]),
                         sd1, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=[lora])
    assert result.infotexts[0].startswith("a cat <lora:x:0.5>")


def test_folder_batch(sd1, tmp_path) -> None:
    src, dst, masks = tmp_path / "in", tmp_path / "out", tmp_path / "masks"
    for folder in (src, masks):
        folder.mkdir()
    noise_image(seed=1).save(src / "a.png")
    noise_image(seed=2).save(src / "b.jpg")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 32))
    mask.save(masks / "b.png")
    req = Img2ImgBatchRequest(input_dir=str(src), output_dir=str(dst), mask_dir=str(masks), steps=2, seed=9,
                              denoising_strength=0.5, mask_blur=0, n_iter=2)
    control = JobControl()
    result = run_img2img_batch(req, sd1, control, OutputOptions(save=False, outdir=tmp_path), roots=[tmp_path.resolve()])
    assert sorted(p.name for p in dst.iterdir()) == ["a-1.png", "a.png", "b-1.png", "b.png"]
    assert result.seeds == [9, 10, 9, 10]
    assert control.progress.job_count == 4
    original = px(Image.open(src / "b.jpg").convert("RGB"))
    painted = px(Image.open(dst / "b.png").convert("RGB"))
    assert np.array_equal(original[40:], painted[40:])  # b's mask was used: its unmasked half is unchanged


def test_refiner_checkpoint_runs_plain_img2img(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    refiner = load_active(tiny_checkpoints["sdxl-refiner"]["single"], model_cache_dir)
    assert refiner.model.task == "img2img"
    result = run(refiner, tmp_path, steps=2)
    assert result.images[0].size == (64, 64)
