"""ControlNet models and the hook: three file layouts load exactly, titles and lookup, family mismatch,
results identical to diffusers' own ControlNet pipeline, weight/guidance/control-mode semantics,
9-channel inpainting and img2img passes, and the txt2img runner (with hires fix)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.generation.controlnet.hook import ControlNetHook, as_tensor, controlnet_hook, prepare_unit, target_size
from modules.generation.controlnet.inject import ActiveControl, ControlInjector, injected, soft_scales
from modules.generation.controlnet.preprocess import resize_to_target
from modules.generation.controlnet.models import ControlNetCache, ControlNetError, ControlNetLibrary, load_controlnet
from modules.generation.controlnet.units import parse_unit
from modules.generation.addons.hooks import SamplingContext
from modules.generation.runners.img2img import encode_request_image
from tests.fixtures.tiny_models import build_tiny_components, tiny_pipeline
from tests.fixtures.tiny_networks import controlnet_ldm_state, tiny_controlnet, write_safetensors

STEPS = 3


@pytest.fixture(scope="module")
def sd1(model_cache_dir: Path):
    pipe = tiny_pipeline("sd1", build_tiny_components("sd1"), model_cache_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def net(sd1):
    return tiny_controlnet(sd1.unet)


@pytest.fixture(scope="module")
def cn_dir(tmp_path_factory, net) -> Path:
    folder = tmp_path_factory.mktemp("ControlNet")
    net.save_pretrained(folder / "tiny-folder")
    write_safetensors(folder / "tiny-ldm.safetensors", controlnet_ldm_state(net))
    config = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    write_safetensors(folder / "tiny-embedded.safetensors", net.state_dict(), {"modelspec.architecture": "x"})
    (folder / "tiny-embedded.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
    return folder


def _picture() -> Image.Image:
    rng = np.random.default_rng(0)
    array = np.zeros((64, 64, 3), dtype=np.uint8)
    array[16:48, 20:44] = rng.integers(100, 255, size=(32, 24, 3))
    return Image.fromarray(array)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _call(pipe, **kw) -> np.ndarray:
    args = dict(prompt="a cat", num_inference_steps=STEPS, height=64, width=64, output_type="np",
                generator=torch.Generator().manual_seed(1))
    args.update(kw)
    return pipe(**args).images[0]


def _with(pipe, controls, **kw) -> np.ndarray:
    with injected(pipe.unet, ControlInjector(controls, pipe.scheduler, 1, 8)):
        return _call(pipe, **kw)


def test_every_layout_loads_exactly_and_is_listed(sd1, net, cn_dir) -> None:
    library = ControlNetLibrary((cn_dir,))
    entries = {e.name: e for e in library.entries()}
    assert set(entries) == {"tiny-folder", "tiny-ldm", "tiny-embedded"}
    for entry in entries.values():
        assert entry.title.startswith(f"{entry.name} [") and len(entry.title.split("[")[1]) == 9
        loaded = load_controlnet(entry, dict(sd1.unet.config), "SD 1.x", dtype=torch.float32, device="cpu")
        assert _same_weights(loaded, net), entry.name
    title = entries["tiny-ldm"].title
    assert library.find(title).name == "tiny-ldm" and library.find("TINY-LDM").name == "tiny-ldm"
    with pytest.raises(ControlNetError, match="'nope' not found"):
        library.find("nope")
    cache = ControlNetCache()
    first = cache.get(entries["tiny-ldm"], dict(sd1.unet.config), "SD 1.x", dtype=torch.float32, device="cpu")
    assert cache.get(entries["tiny-ldm"], dict(sd1.unet.config), "SD 1.x", dtype=torch.float32, device="cpu") is first


def test_a_controlnet_for_another_family_is_refused(model_cache_dir, cn_dir, tmp_path) -> None:
    sdxl = tiny_pipeline("sdxl", build_tiny_components("sdxl"), model_cache_dir)
    library = ControlNetLibrary((cn_dir,))
    for entry in library.entries():
        with pytest.raises(ControlNetError, match=r"was made for cross-attention width 8 .* does not fit the "
                                                  r"loaded SDXL model \(cross-attention width 12"):
            load_controlnet(entry, dict(sdxl.unet.config), "SDXL", dtype=torch.float32, device="cpu")


def test_balanced_unit_equals_diffusers_controlnet_pipeline(sd1, net) -> None:
    from diffusers import StableDiffusionControlNetPipeline

    reference = StableDiffusionControlNetPipeline(**sd1.components, controlnet=net)
    reference.set_progress_bar_config(disable=True)
    image = _picture()
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    ours = _with(sd1, [ActiveControl(net, 0.7, 0.2, 1.0, False, False, lambda w, h: tensor)])
    theirs = _call(reference, image=image, controlnet_conditioning_scale=0.7, control_guidance_start=0.2)
    assert np.array_equal(ours, theirs)
    # the end of the window follows the extension (stop when step/total > end), one step later than diffusers
    window = ActiveControl(net, 1.0, 0.2, 0.5, False, False, lambda w, h: tensor)
    assert [window.keeps(i, 4) for i in range(4)] == [False, True, True, False]
    assert not sd1.unet._forward_pre_hooks


def test_weight_window_and_control_modes(sd1, net) -> None:
    tensor = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plain = _call(sd1)

    def unit(weight=1.0, start=0.0, end=1.0, soft=False, cfg=False):
        return ActiveControl(net, weight, start, end, soft, cfg, lambda w, h: tensor)

    assert np.array_equal(_with(sd1, [unit(weight=0.0)]), plain)
    assert np.array_equal(_with(sd1, [unit(start=1.0)]), plain)
    balanced, prompt_first, control_first = (_with(sd1, [unit()]), _with(sd1, [unit(soft=True)]),
                                             _with(sd1, [unit(soft=True, cfg=True)]))
    assert len({balanced.tobytes(), prompt_first.tobytes(), control_first.tobytes(), plain.tobytes()}) == 4
    assert soft_scales(13)[-1] == 1.0 and abs(soft_scales(13)[0] - 0.825 ** 12) < 1e-12 and len(soft_scales(10)) == 10
    two = _with(sd1, [unit(weight=0.5), unit(weight=0.5)])
    assert np.allclose(two, balanced, atol=2e-3)


def _ctx(pipe, units_hook_task="txt2img", **call_kwargs) -> SamplingContext:
    class _Family:
        architecture, label = "ldm-unet", "SD 1.x"

    class _Model:
        family, vae_scale_factor = _Family(), 8

    return SamplingContext(pipe=pipe, model=_Model(), req=None, task=units_hook_task, prompts=["a cat"],  # type: ignore[arg-type]
                           negatives=[""], seeds=[7], batch_index=0, call_kwargs=dict(call_kwargs))


def test_hook_prepares_maps_writes_infotext_and_cleans_up(sd1, cn_dir) -> None:
    unit = parse_unit({"module": "canny", "model": "tiny-ldm", "image": encode_request_image(_picture()),
                       "pixel_perfect": True, "threshold_a": 50})
    hook = controlnet_hook([unit, parse_unit({"model": "tiny-ldm", "enabled": False})], cn_dir)
    assert isinstance(hook, ControlNetHook) and len(hook.units) == 1
    ctx = _ctx(sd1, height=64, width=64)
    plain = _call(sd1)
    with hook(ctx):
        assert sd1.unet._forward_pre_hooks
        controlled = _call(sd1)
    assert not sd1.unet._forward_pre_hooks
    assert np.abs(controlled - plain).max() > 1e-3
    title = ControlNetLibrary((cn_dir,)).find("tiny-ldm").title
    assert ctx.infotext_params == {"ControlNet 0": (
        f"Module: canny, Model: {title}, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 64, "
        "Threshold A: 50, Threshold B: 200, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, "
        "Control Mode: Balanced")}
    refiner = _ctx(sd1, "refiner", height=64, width=64)
    with hook(refiner):
        assert not sd1.unet._forward_pre_hooks
    no_image = controlnet_hook([parse_unit({"model": "tiny-ldm"})], cn_dir)
    with pytest.raises(ControlNetError, match="unit 0 has no image"):
        with no_image(_ctx(sd1, height=64, width=64)):
            pass


def test_img2img_latents_and_nine_channel_inpainting(model_cache_dir, sd1, net) -> None:
    inpaint = tiny_pipeline("sd1", build_tiny_components("sd1", inpaint=True), model_cache_dir, inpaint=True)
    inpaint.set_progress_bar_config(disable=True)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert target_size(_ctx(sd1, image=latents)) == (64, 64)
    unit = parse_unit({"module": "canny", "image": encode_request_image(_picture())})
    prepared = prepare_unit(unit, 0, None, 64, 64, None, 0)
    assert prepared.processor_res == 512 and prepared.detected.shape[:2] == (512, 512)
    tensor = as_tensor(resize_to_target(prepared.detected, 64, 64, prepared.resize_mode))
    assert tensor.shape == (1, 3, 64, 64) and set(torch.unique(tensor).tolist()) <= {0.0, 1.0}
    kw = dict(image=latents, mask_image=Image.new("L", (64, 64), 255), masked_image_latents=latents,
              strength=1.0)
    plain = _call(inpaint, **kw)
    with injected(inpaint.unet, ControlInjector([ActiveControl(net, 1.0, 0.0, 1.0, False, False,
                                                               lambda w, h: tensor)], inpaint.scheduler, 1, 8)):
        controlled = _call(inpaint, **kw)
    assert np.abs(controlled - plain).max() > 1e-3


def test_through_the_txt2img_runner_with_hires(tiny_checkpoints, model_cache_dir, cn_dir, tmp_path) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    ckpt = tiny_checkpoints["sd1"]["single"]
    model = load_model(ckpt, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    active = ActiveModel(info=CheckpointInfo(ckpt, ckpt.name, False), model=model, sha256="0" * 64, load_seconds=0)
    folder = tmp_path / "ControlNet"
    folder.mkdir()
    write_safetensors(folder / "cn.safetensors", controlnet_ldm_state(tiny_controlnet(model.pipeline.unet)))
    unit = {"module": "canny", "model": "cn", "image": encode_request_image(_picture()), "resize_mode": "Just Resize"}

    def run(units, **kw):
        req = Txt2ImgRequest(prompt="a red circle", steps=2, width=64, height=64, seed=5, sampler_name="Euler", **kw)
        hooks = [controlnet_hook([parse_unit(u) for u in units], folder)]
        return run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=hooks)

    plain, controlled = run([]), run([unit])
    assert plain.images[0].tobytes() != controlled.images[0].tobytes()
    assert 'ControlNet 0: "Module: canny, Model: cn [' in controlled.infotexts[0]
    assert run([{**unit, "weight": 0.0}]).images[0].tobytes() == plain.images[0].tobytes()
    hires = run([{**unit, "hr_option": "Both"}], enable_hr=True, hr_scale=1.5, hr_upscaler="Latent",
                denoising_strength=0.6)
    assert hires.images[0].size == (96, 96) and "ControlNet 0" in hires.infotexts[0]
    shutil.rmtree(folder)


def test_through_the_img2img_runner_inpainting_with_the_init_image(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from modules.generation.runners.img2img import run_img2img
    from modules.generation.requests import Img2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    ckpt = tiny_checkpoints["sd1"]["single"]
    model = load_model(ckpt, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    active = ActiveModel(info=CheckpointInfo(ckpt, ckpt.name, False), model=model, sha256="0" * 64, load_seconds=0)
    folder = tmp_path / "ControlNet"
    write_safetensors(folder / "cn.safetensors", controlnet_ldm_state(tiny_controlnet(model.pipeline.unet)))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))

    def run(units):
        req = Img2ImgRequest(prompt="a cat", steps=3, seed=5, sampler_name="Euler", denoising_strength=0.8,
                             init_images=[encode_request_image(_picture())], mask=encode_request_image(mask))
        hooks = [controlnet_hook([parse_unit(u) for u in units], folder)]
        return run_img2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=hooks)

    plain, controlled = run([]), run([{"module": "canny", "model": "cn", "control_mode": 2}])
    assert plain.images[0].tobytes() != controlled.images[0].tobytes()
    assert "Control Mode: ControlNet is more important" in controlled.infotexts[0]


def test_unit_inputs_mask_strokes_and_init_image() -> None:
    from types import SimpleNamespace

    strokes = Image.new("RGB", (64, 64), (0, 0, 0))
    strokes.paste((255, 255, 255), (10, 10, 20, 50))
    picture = encode_request_image(_picture())
    unit = parse_unit({"module": "canny", "image": picture, "mask": encode_request_image(strokes)})
    prepared = prepare_unit(unit, 0, None, 64, 64, None, 0)
    assert prepared.module == "none" and np.array_equal(prepared.detected, np.asarray(strokes))
    blank = parse_unit({"module": "canny", "image": picture, "mask": encode_request_image(Image.new("L", (64, 64)))})
    assert prepare_unit(blank, 0, None, 64, 64, None, 0).module == "canny"
    req = SimpleNamespace(init_images=[picture], resize_mode=2)
    from_init = prepare_unit(parse_unit({"module": "invert", "model": "x"}), 0, req, 64, 64, None, 0)
    assert from_init.resize_mode == "Resize and Fill"
    assert np.array_equal(from_init.detected, 255 - np.asarray(_picture()))
