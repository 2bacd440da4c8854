"""Inpainting and outpainting: mask handling, the four masked-content modes, only-masked crop/paste,
the 9-channel inpainting checkpoint, outpainting -- and the unmasked pixels always come back unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modules.generation.runners.img2img import encode_request_image, run_img2img
from modules.generation.runners.inpaint import (apply_overlay, binary_mask, crop_region, expand_crop_region, make_overlay,
                                        outpaint_canvas, prepare_mask)
from modules.generation.requests import Img2ImgRequest, Outpaint
from modules.generation.results import OutputOptions
from modules.generation.validation import InvalidRequestError
from modules.jobs.progress import JobControl
from tests.test_img2img import load_active, noise_image


@pytest.fixture(scope="module")
def sd1(tiny_checkpoints, model_cache_dir: Path):
    return load_active(tiny_checkpoints["sd1"]["single"], model_cache_dir)


@pytest.fixture(scope="module")
def sd1_inpaint(tiny_checkpoints, model_cache_dir: Path):
    return load_active(tiny_checkpoints["sd1-inpaint"]["single"], model_cache_dir)


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def inpaint(active, image: Image.Image, mask: Image.Image, tmp_path: Path, **kw):
    args = dict(prompt="a red circle", negative_prompt="lowres", steps=3, seed=3, sampler_name="Euler",
                denoising_strength=0.75, init_images=[encode_request_image(image)], mask=encode_request_image(mask),
                width=image.width, height=image.height)
    args.update(kw)
    return run_img2img(Img2ImgRequest(**args), active, JobControl(), OutputOptions(save=False, outdir=tmp_path))


def unchanged_outside(result_image: Image.Image, original: Image.Image, keep: np.ndarray) -> None:
    out, src = np.asarray(result_image), np.asarray(original)
    assert np.array_equal(out[keep], src[keep])


# --------------------------------------------------------------------------- masks (pure)


def test_binary_mask_reads_white_or_sketch_alpha() -> None:
    grey = Image.new("L", (8, 8), 100)
    grey.paste(200, (0, 0, 4, 8))
    assert np.array_equal(np.unique(np.asarray(binary_mask(grey))), [0, 255])
    assert binary_mask(grey).getpixel((1, 1)) == 255 and binary_mask(grey).getpixel((6, 1)) == 0
    sketch = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    sketch.paste((10, 10, 10, 255), (4, 0, 8, 8))  # dark strokes: alpha, not colour, is the mask
    mask = binary_mask(sketch)
    assert mask.getpixel((6, 3)) == 255 and mask.getpixel((1, 3)) == 0


def test_invert_and_blur() -> None:
    mask = box_mask((64, 64), (16, 16, 48, 48))
    inverted = prepare_mask(mask, invert=True, blur_x=0, blur_y=0)
    assert inverted.getpixel((0, 0)) == 255 and inverted.getpixel((32, 32)) == 0
    blurred = np.asarray(prepare_mask(mask, invert=False, blur_x=4, blur_y=0))
    assert 0 < blurred[32, 15] < 255 and blurred[15, 32] == 0  # x blur only
    assert blurred[32, 16 - 11] == 0  # kernel 2*int(2.5*4+0.5)+1 = 21: radius 10


def test_only_masked_crop_geometry() -> None:
    mask = box_mask((200, 100), (90, 40, 110, 60))
    assert crop_region(mask, 0) == (90, 40, 110, 60)
    assert crop_region(mask, 10) == (80, 30, 120, 70)
    assert crop_region(Image.new("L", (8, 8), 0), 4) is None
    # widened to the processing aspect ratio 2:1, inside the image
    assert expand_crop_region((80, 30, 120, 70), 128, 64, 200, 100) == (60, 30, 140, 70)
    # near the border the box slides back inside
    assert expand_crop_region((0, 0, 20, 40), 64, 64, 200, 100) == (0, 0, 40, 40)


def test_overlay_restores_unmasked_pixels_exactly() -> None:
    original, generated = noise_image(seed=1), noise_image(seed=2)
    mask = prepare_mask(box_mask((64, 64), (20, 20, 40, 40)), invert=False, blur_x=4, blur_y=4)
    out = apply_overlay(generated, None, make_overlay(original, mask))
    unchanged_outside(out, original, np.asarray(mask) == 0)
    assert not np.array_equal(np.asarray(out)[30, 30], np.asarray(original)[30, 30])


# --------------------------------------------------------------------------- runner


@pytest.mark.parametrize("fill, label", [(0, "fill"), (1, None), (2, "latent noise"), (3, "latent nothing")])
def test_masked_content_modes_keep_the_unmasked_area(sd1, tmp_path, fill: int, label: str | None) -> None:
    image = noise_image(seed=4)
    result = inpaint(sd1, image, box_mask((64, 64), (24, 24, 40, 40)), tmp_path, inpainting_fill=fill, mask_blur=2)
    overlay_mask = np.clip(np.asarray(prepare_mask(box_mask((64, 64), (24, 24, 40, 40)), invert=False, blur_x=2,
                                                    blur_y=2), dtype=np.float32) * 2, 0, 255)
    unchanged_outside(result.images[0], image, overlay_mask == 0)
    inside = np.abs(np.asarray(result.images[0], dtype=int) - np.asarray(image, dtype=int))[28:36, 28:36]
    assert inside.mean() > 5  # the masked area was repainted
    text = result.infotexts[0]
    assert "Mask blur: 2" in text
    assert (f"Masked content: {label}" in text) if label else ("Masked content" not in text)


def test_masked_content_modes_differ(sd1, tmp_path) -> None:
    image, mask = noise_image(seed=4), box_mask((64, 64), (16, 16, 48, 48))
    outs = [np.asarray(inpaint(sd1, image, mask, tmp_path, inpainting_fill=f, denoising_strength=0.5).images[0])
            for f in range(4)]
    assert len({o.tobytes() for o in outs}) == 4


def test_invert_paints_the_outside(sd1, tmp_path) -> None:
    image = noise_image(seed=5)
    result = inpaint(sd1, image, box_mask((64, 64), (8, 8, 56, 56)), tmp_path, inpainting_mask_invert=1, mask_blur=0)
    unchanged_outside(result.images[0], image, np.asarray(box_mask((64, 64), (8, 8, 56, 56))) == 255)
    assert "Mask mode: Inpaint not masked" in result.infotexts[0]


def test_only_masked_crops_processes_and_pastes_back(sd1, tmp_path) -> None:
    image = noise_image(160, 96, seed=6)
    mask = box_mask((160, 96), (100, 40, 116, 56))
    result = inpaint(sd1, image, mask, tmp_path, inpaint_full_res=True, inpaint_full_res_padding=8, mask_blur=0,
                     width=64, height=64)
    assert result.images[0].size == (160, 96)  # the original size, not the processing size
    keep = np.ones((96, 160), dtype=bool)
    keep[40:56, 100:116] = False
    unchanged_outside(result.images[0], image, keep)
    text = result.infotexts[0]
    assert "Inpaint area: Only masked" in text and "Masked area padding: 8" in text and "Size: 64x64" in text


def test_inpainting_checkpoint_uses_its_nine_channels(sd1_inpaint, tmp_path) -> None:
    assert sd1_inpaint.model.task == "inpaint" and sd1_inpaint.model.pipeline.unet.config.in_channels == 9
    image, mask = noise_image(seed=7), box_mask((64, 64), (16, 16, 48, 48))
    result = inpaint(sd1_inpaint, image, mask, tmp_path, mask_blur=0)
    unchanged_outside(result.images[0], image, np.asarray(mask) == 0)
    again = inpaint(sd1_inpaint, image, mask, tmp_path, mask_blur=0)
    assert again.images[0].tobytes() == result.images[0].tobytes()
    # no mask: img2img through the inpaint pipeline with everything masked
    plain = run_img2img(Img2ImgRequest(prompt="x", steps=2, init_images=[encode_request_image(image)]),
                        sd1_inpaint, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    assert plain.images[0].size == (64, 64)


def test_txt2img_and_hires_on_an_inpainting_checkpoint(sd1_inpaint, tmp_path) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import run_txt2img

    req = Txt2ImgRequest(prompt="a cat", negative_prompt="lowres", steps=2, seed=1, width=64, height=64,
                         enable_hr=True, hr_scale=1.5)
    result = run_txt2img(req, sd1_inpaint, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    assert result.images[0].size == (96, 96)


def test_empty_mask_is_refused(sd1, tmp_path) -> None:
    with pytest.raises(InvalidRequestError, match="mask is empty"):
        inpaint(sd1, noise_image(), Image.new("L", (64, 64), 0), tmp_path)


# --------------------------------------------------------------------------- outpainting


def test_outpaint_canvas_geometry() -> None:
    image = noise_image(40, 32)
    canvas, paint, protect = outpaint_canvas(image, None, Outpaint(left=10, down=16), multiple=8)
    assert canvas.size == (56, 48)  # 40+10 -> 56 (shortfall on the left), 32+16 = 48
    assert np.array_equal(np.asarray(canvas)[0:32, 16:56], np.asarray(image))
    assert np.array_equal(np.asarray(canvas)[40, 16:56], np.asarray(image)[31])  # edge row stretched down
    assert paint.getpixel((0, 0)) == 255 and paint.getpixel((30, 10)) == 0
    assert protect.getpixel((30, 10)) == 255 and protect.getpixel((0, 0)) == 0


def test_outpaint_enlarges_and_keeps_the_original(sd1, tmp_path) -> None:
    image = noise_image(64, 64, seed=8)
    result = run_img2img(Img2ImgRequest(prompt="a wide landscape", steps=3, seed=1, denoising_strength=0.8,
                                        init_images=[encode_request_image(image)], inpainting_fill=0,
                                        outpaint=Outpaint(right=32, up=16)),
                         sd1, JobControl(), OutputOptions(save=False, outdir=tmp_path))
    out = np.asarray(result.images[0])
    assert result.images[0].size == (96, 80)
    assert np.array_equal(out[16:80, 0:64], np.asarray(image))
    canvas, _, _ = outpaint_canvas(image, None, Outpaint(right=32, up=16), multiple=8)
    prefill = np.asarray(canvas).astype(int)
    assert np.abs(out[0:16].astype(int) - prefill[0:16]).mean() > 5  # the new area was painted
    assert np.abs(out[:, 70:].astype(int) - prefill[:, 70:]).mean() > 5
    assert "Masked content: fill" in result.infotexts[0] and "Size: 96x80" in result.infotexts[0]
