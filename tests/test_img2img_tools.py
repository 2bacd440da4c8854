"""img2img tools without a model: Sketch and Inpaint sketch compositing, Resize by, the image a "copy to"
button takes, and soft inpainting's blend (far from the mask the output is the original, pixel for pixel)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.generation.requests import Img2ImgRequest
from modules.generation.runners.inpaint import MaskError, apply_overlay, prepare_inpaint
from modules.generation.runners.soft_inpaint import soft_overlay_mask
from webui.img2img_inputs import InputError, mode_image, request_images, scaled_size, sketch_composite


def editor_value(background: Image.Image, strokes: list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]):
    layer = Image.new("RGBA", background.size, (0, 0, 0, 0))
    for box, colour in strokes:
        layer.paste((*colour, 255), box)
    return {"background": background, "layers": [layer], "composite": None}


def test_sketch_strokes_become_part_of_the_init_image() -> None:
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    value = editor_value(grey, [((0, 0, 8, 8), (255, 0, 0)), ((20, 20, 32, 32), (0, 0, 255))])
    init, mask = request_images("sketch", None, None, None, None, sketch=value)
    assert mask is None
    pixels = np.asarray(init.convert("RGB"))
    assert tuple(pixels[2, 2]) == (255, 0, 0) and tuple(pixels[25, 25]) == (0, 0, 255)
    assert tuple(pixels[15, 15]) == (128, 128, 128)


def test_inpaint_sketch_strokes_are_the_mask_and_their_colour_goes_into_the_init() -> None:
    grey = Image.new("RGB", (32, 32), (128, 128, 128))
    value = editor_value(grey, [((4, 4, 12, 12), (0, 255, 0))])
    init, mask = request_images("inpaint_sketch", None, None, None, None, inpaint_sketch=value)
    assert tuple(np.asarray(init.convert("RGB"))[8, 8]) == (0, 255, 0)
    assert mask is not None and mask.getbbox() == (4, 4, 12, 12)
    with pytest.raises(InputError, match="draw in colour"):
        request_images("inpaint_sketch", None, None, None, None, inpaint_sketch=editor_value(grey, []))
    with pytest.raises(InputError, match="sketch needs an image"):
        request_images("sketch", None, None, None, None, sketch=None)


def test_resize_by_and_copy_between_modes() -> None:
    image = Image.new("RGB", (100, 60))
    assert scaled_size(image, 1.5) == (144, 88)
    assert scaled_size(image, 0.01) == (8, 8)
    with pytest.raises(InputError):
        scaled_size(image, 0)
    grey = Image.new("RGB", (16, 16), (128, 128, 128))
    value = editor_value(grey, [((0, 0, 4, 4), (255, 0, 0))])
    assert tuple(np.asarray(mode_image("sketch", None, None, value, None, None).convert("RGB"))[1, 1]) == (255, 0, 0)
    # inpaint copies the picture, not its mask strokes
    assert tuple(np.asarray(mode_image("inpaint", None, value, None, None, None).convert("RGB"))[1, 1]) == (128,) * 3
    assert mode_image("img2img", grey, None, None, None, None) is grey
    assert mode_image("outpaint", None, None, None, None, None) is None
    assert sketch_composite(None) is None


def _inpaint(soft: bool, **kw):
    rng = np.random.default_rng(0)
    original = Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8))
    mask = Image.new("L", (96, 96), 0)
    mask.paste(255, (24, 24, 56, 56))
    req = Img2ImgRequest(mask_blur=2, soft_inpainting=soft, soft_inpainting_softness=4, **kw)
    params: dict = {}
    prepared = prepare_inpaint(original, mask, req, 96, 96, params)
    generated = Image.new("RGB", (96, 96), (255, 255, 255))
    out = np.asarray(apply_overlay(generated, prepared.paste_to, prepared.overlay), dtype=np.int16)
    return np.asarray(original, dtype=np.int16), out, params


def test_soft_inpainting_keeps_far_pixels_and_blends_the_edge() -> None:
    original, soft, params = _inpaint(True)
    _, hard, _ = _inpaint(False)
    far = np.ones((96, 96), dtype=bool)
    far[24 - 16:56 + 16, 24 - 16:56 + 16] = False  # the mask plus its blur and a 4-pixel feather's kernel
    assert np.array_equal(soft[far], original[far])
    assert np.array_equal(soft[40, 40], [255, 255, 255])  # the middle of the mask is the result
    # at the edge the soft blend differs from the hard overlay: part result, part original
    assert not np.array_equal(soft[40, 21], hard[40, 21]) and not np.array_equal(soft[40, 21], original[40, 21])
    assert params["Soft inpainting enabled"] is True and params["Soft inpainting softness"] == 4
    assert "Soft inpainting enabled" not in _inpaint(False)[2]


def test_soft_inpainting_with_only_masked_and_without_a_mask() -> None:
    original, soft, _ = _inpaint(True, inpaint_full_res=True, inpaint_full_res_padding=8)
    assert np.array_equal(soft[:4], original[:4]) and np.array_equal(soft[:, -4:], original[:, -4:])
    with pytest.raises(MaskError, match="soft inpainting"):
        prepare_inpaint(Image.new("RGB", (16, 16)), None, Img2ImgRequest(soft_inpainting=True), 16, 16, {})


def test_soft_overlay_mask_preservation_keeps_more_of_the_original() -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    low = np.asarray(soft_overlay_mask(mask, 6, 0.0), dtype=np.int16)
    high = np.asarray(soft_overlay_mask(mask, 6, 1.0), dtype=np.int16)
    assert low[32, 5] == 255 and low[32, 60] == 0
    assert 0 < high[32, 32] < low[32, 32] < 255  # the edge band: preservation keeps more of the original


def _mode_values(**kw):
    from webui.img2img_modes import ModeValues

    values = dict(files=[], input_dir="", output_dir="", mask_dir="", use_png_info=False,
                  png_info_props=["Prompt"], resize_kind="to", scale=1.0)
    values.update(kw)
    return ModeValues(**values)


def test_resize_by_and_mask_options_in_the_request_data() -> None:
    from webui.img2img_modes import finish_request_data

    data = {"width": None, "height": None, "mask_blur": 4, "inpainting_fill": 1, "soft_inpainting": True,
            "prompt": "x"}
    image = Image.new("RGB", (100, 60))
    plain = finish_request_data("sketch", dict(data), image, _mode_values(resize_kind="by", scale=2.0))
    assert (plain["width"], plain["height"]) == (200, 120)
    assert "soft_inpainting" not in plain and "mask_blur" not in plain and plain["mask"] is None
    masked = finish_request_data("inpaint_sketch", dict(data), image, _mode_values())
    assert masked["soft_inpainting"] is True and masked["width"] is None


def test_batch_request_from_the_page(tmp_path) -> None:
    from webui.img2img_modes import batch_request

    path = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(path)
    data = {"prompt": "x", "mask_blur": 4, "soft_inpainting": False, "steps": 3}
    req = batch_request(dict(data), _mode_values(files=[str(path)], use_png_info=True))
    assert req.batch_names == ["one.png"] and len(req.batch_images) == 1 and req.use_png_info
    assert req.png_info_props == ["Prompt"] and req.input_dir is None
    folder = batch_request(dict(data), _mode_values(input_dir=" in ", mask_dir="masks"))
    assert folder.input_dir == "in" and folder.mask_dir == "masks" and folder.batch_images == []
    with pytest.raises(InputError, match="not both"):
        batch_request(dict(data), _mode_values(files=[str(path)], input_dir="in"))
    with pytest.raises(InputError, match="upload images"):
        batch_request(dict(data), _mode_values())
    with pytest.raises(InputError, match="Resize by"):
        batch_request(dict(data), _mode_values(input_dir="in", resize_kind="by"))


def test_extras_batch_request_from_the_page(tmp_path) -> None:
    from webui.extras_batch import batch_extras_request

    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    uploads = batch_extras_request("batch", [str(path)], "", "", upscaling_resize=2.0)
    assert uploads.names == ["a.png"] and uploads.input_dir is None and uploads.save_images
    folder = batch_extras_request("directory", None, " in ", "", upscaling_resize=2.0)
    assert folder.input_dir == "in" and folder.images == [] and folder.output_dir is None
    with pytest.raises(ValueError, match="input directory"):
        batch_extras_request("directory", None, " ", "")
    with pytest.raises(ValueError, match="upload"):
        batch_extras_request("batch", [], "", "")
