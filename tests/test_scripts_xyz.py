"""The X/Y/Z plot (scripts/xyz_grid.py, modules/scripts/xyz): A1111's value syntax, axis indices and
positional arguments, the grid's shape, labels and infotext, refusals before anything runs, stops and
skips; then real grids on a tiny SD1 model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from PIL import Image

from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
from modules.generation.validation import InvalidRequestError
from modules.images.grid import labels, layout_annotations
from modules.images.infotext import parse_infotext
from modules.scripts.host import ScriptHost
from modules.scripts.script import ScriptArgsError
from modules.scripts.sources import BUILTIN_DIGESTS, file_digest
from modules.scripts.xyz import plot
from modules.scripts.xyz.args import XYZArgs
from modules.scripts.xyz.axes import axis_labels
from modules.scripts.xyz.values import ValueSyntaxError, parse_values
from tests.helpers.script_job import FakeJob

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> ScriptHost:
    """The studio's scripts with the shipped built-ins loaded (no model)."""
    host = ScriptHost(REPO, tmp_path_factory.mktemp("data"), user_code=False)
    host.start()
    return host


def xyz(host: ScriptHost):
    return host.registry.selectable_script("X/Y/Z plot", "txt2img")


def test_builtin_digests_match_the_shipped_scripts(host: ScriptHost) -> None:
    shipped = {path.name: file_digest(path) for path in (REPO / "scripts").glob("*.py")}
    assert shipped == BUILTIN_DIGESTS, "run `python -m modules.scripts.sources` and update BUILTIN_DIGESTS"
    titles = {s.title for s in host.registry.selectable("txt2img")}
    assert {"X/Y/Z plot", "Prompt matrix", "Prompts from file or textbox"} <= titles
    assert all(host.sources.get(name).builtin and host.sources.get(name).loaded for name in shipped)


def test_value_syntax_as_a1111() -> None:
    assert parse_values("1-5", "int") == [1, 2, 3, 4, 5]
    assert parse_values("1-10 (+2)", "int") == [1, 3, 5, 7, 9]
    assert parse_values("10-1 (-3)", "int") == [10, 7, 4]
    assert parse_values("1-10 [5]", "int") == [1, 3, 5, 7, 10]
    assert parse_values("1-3, 7, , 10-11", "int") == [1, 2, 3, 7, 10, 11]
    assert parse_values("0.5-1.5 (+0.25)", "float") == [0.5, 0.75, 1.0, 1.25, 1.5]
    assert parse_values("0-1 [5]", "float") == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert parse_values("7, 7.5", "float") == [7.0, 7.5]
    assert parse_values('Euler a, "DPM++ 2M, Karras", DDIM', "str") == ["Euler a", "DPM++ 2M, Karras", "DDIM"]
    assert parse_values("a, b", "permutations") == [["a", "b"], ["b", "a"]]
    with pytest.raises(ValueSyntaxError, match="'ten' is not an integer"):
        parse_values("1, ten", "int")
    with pytest.raises(ValueSyntaxError, match="too many"):
        parse_values("1-1000000", "int")


def test_axis_indices_follow_a1111_per_tab() -> None:
    t2i, i2i = axis_labels("txt2img"), axis_labels("img2img")
    assert (t2i[0], t2i[1], t2i[4], t2i[5], t2i[9], t2i[11], t2i[28], t2i[29], t2i[41]) == (
        "Nothing", "Seed", "Steps", "Hires steps", "Sampler", "Checkpoint name", "Hires upscaler", "VAE", "Size")
    assert (i2i[5], i2i[6], i2i[9], i2i[10], i2i[24], i2i[28], i2i[40]) == (
        "CFG Scale", "Image CFG Scale", "Sampler", "Checkpoint name", "Denoising", "VAE", "Size")
    assert len(t2i) == 42 + 3 and len(i2i) == 41 + 3  # A1111's, then the ControlNet axes


def test_positional_args_translate_indices_per_tab(host: ScriptHost) -> None:
    script = xyz(host)
    positional = [4, "2,3", [], 6, "5, 7", [], 0, "", [], True, False, False, False, False, False, False, 2, False]
    named = script.args_from_positional(positional, "txt2img")
    assert named["x_type"] == "Steps" and named["y_type"] == "CFG Scale" and named["z_type"] == "Nothing"
    assert script.parse_args(named) == XYZArgs(x_type="Steps", x_values="2,3", y_type="CFG Scale",
                                               y_values="5, 7", margin_size=2)
    assert script.args_from_positional([5], "img2img")["x_type"] == "CFG Scale"
    assert script.args_from_positional([5], "txt2img")["x_type"] == "Hires steps"
    with pytest.raises(ScriptArgsError, match="out of range"):
        script.args_from_positional([99], "txt2img")
    with pytest.raises(ScriptArgsError, match="at most 18"):
        script.args_from_positional([0] * 19, "txt2img")


def test_refusals_before_anything_runs(host: ScriptHost) -> None:
    def check(args: dict, request=None, tab: str = "txt2img") -> None:
        req = request or Txt2ImgRequest(prompt="a cat", width=64, height=64)
        req = type(req).model_validate({**req.model_dump(), "script": {"name": "x/y/z plot", "args": args}})
        host.precheck(req, tab)

    check({"x_type": "Steps", "x_values": "1-3"})  # fine
    with pytest.raises(InvalidRequestError, match="Sigma Churn.*not supported"):
        check({"x_type": "Sigma Churn", "x_values": "0, 1"})
    with pytest.raises(InvalidRequestError, match="Face restore.*not supported"):
        check({"x_type": "Face restore", "x_values": "CodeFormer"})
    with pytest.raises(InvalidRequestError, match="Hires steps.*txt2img axis"):
        check({"x_type": "Hires steps", "x_values": "1"},
              Img2ImgRequest(prompt="a", init_images=["x"], width=64, height=64), "img2img")
    with pytest.raises(InvalidRequestError, match="101 cells.*limit of 100"):
        check({"x_type": "Steps", "x_values": "1-101"})
    with pytest.raises(InvalidRequestError, match="megapixels.*limit"):
        check({"x_type": "Size", "x_values": "4096x4096, 4096x4096, 4096x4096, 4096x4096, 4096x4096"})
    with pytest.raises(InvalidRequestError, match="steps"):
        check({"x_type": "Steps", "x_values": "20, 500"})  # the request's own range (1-150)
    with pytest.raises(InvalidRequestError, match="did not find 'dog'"):
        check({"x_type": "Prompt S/R", "x_values": "dog, cat"})
    with pytest.raises(InvalidRequestError, match="(?i)sampler"):
        check({"x_type": "Sampler", "x_values": "Euler, Not A Sampler", "csv_mode": True})
    with pytest.raises(InvalidRequestError, match="ControlNet unit"):
        check({"x_type": "[ControlNet] Weight", "x_values": "0.5, 1"})
    # an axis that would change nothing is refused, never silently ignored
    with pytest.raises(InvalidRequestError, match="Hires steps.*change nothing.*enable_hr"):
        check({"x_type": "Hires steps", "x_values": "1, 2"})
    check({"x_type": "Hires steps", "x_values": "1, 2"}, Txt2ImgRequest(prompt="a", width=64, height=64,
                                                                        enable_hr=True))
    with pytest.raises(InvalidRequestError, match="Refiner switch at.*refiner checkpoint"):
        check({"x_type": "Refiner switch at", "x_values": "0.5, 0.7"})
    check({"x_type": "Refiner switch at", "x_values": "0.5, 0.7", "y_type": "Refiner checkpoint",
           "y_values": "None, tiny-refiner"})
    with pytest.raises(InvalidRequestError, match="Var. seed.*variation strength"):
        check({"x_type": "Var. seed", "x_values": "1, 2"})
    with pytest.raises(ScriptArgsError, match="unknown axis"):
        check({"x_type": "Colour", "x_values": "1"})


def _run(args: dict, request: Txt2ImgRequest, before=None) -> tuple[FakeJob, object]:
    job = FakeJob(request, before=before)
    return job, plot.run_plot(job, XYZArgs(**args))


def test_grid_shape_labels_order_and_infotext_without_a_model() -> None:
    request = Txt2ImgRequest(prompt="a cat", width=64, height=64, seed=5)
    args = {"x_type": "Steps", "x_values": "10,20,30", "y_type": "CFG Scale", "y_values": "5-6 [2]",
            "z_type": "Checkpoint name", "z_values": "a.safetensors, b.safetensors", "margin_size": 3,
            "include_lone_images": True, "include_sub_grids": True}
    job, result = _run(args, request)
    # the checkpoint (cost 1) is the outer loop: both of a's cells run before any of b's
    assert [r.checkpoint for r in job.processed] == ["a.safetensors"] * 6 + ["b.safetensors"] * 6
    assert job.cell_counts == [12]
    sub = layout_annotations(64, 64, labels(["Steps: 10", "Steps: 20", "Steps: 30"]),
                             labels(["CFG Scale: 5.0", "CFG Scale: 6.0"]), 3)
    assert sub.pad_left == 48 and sub.pad_top > 0
    assert sub.size == (3 * 64 + 48 + 2 * 3, 2 * 64 + sub.pad_top + 3)
    main = layout_annotations(*sub.size, labels(["a.safetensors", "b.safetensors"]), labels([""]))
    assert result.images[0].size == main.size == (2 * sub.size[0], sub.size[1] + main.pad_top)
    assert [im.size for im in result.images[1:3]] == [sub.size] * 2  # sub-grids, then the 12 cells
    assert len(result.images) == 1 + 2 + 12 and len(result.infotexts) == len(result.paths) == 15
    # a cell is where A1111 puts it: x across, y down, z side by side
    grid = result.images[0]
    x0, y0 = sub.pad_left + 2 * (64 + 3) + 32, main.pad_top + sub.pad_top + (64 + 3) + 32  # Steps 30, CFG 6, a
    assert grid.getpixel((x0, y0)) == (300 % 256, 60, 5)
    assert grid.getpixel((sub.size[0] + x0, y0)) == (300 % 256, 60, 5)  # b: the same settings
    text = result.infotexts[0]
    params = parse_infotext(text)
    assert 'Script: X/Y/Z plot, X Type: Steps, X Values: "10,20,30", Y Type: CFG Scale, Y Values: 5-6 [2], ' \
           'Z Type: Checkpoint name, Z Values: "a.safetensors, b.safetensors", Version: test' in text
    assert "Z Type" not in result.infotexts[1] and "X Type: Steps" in result.infotexts[1]
    assert len(job.grids) == 3 and job.grids[0][1] == text  # the grid and (Z > 1) its sub-grids are saved
    pasted = XYZArgs(**plot_args_from_infotext(params))
    assert (pasted.x_type, pasted.x_values, pasted.y_type, pasted.y_values, pasted.z_type, pasted.z_values) == (
        "Steps", "10,20,30", "CFG Scale", "5-6 [2]", "Checkpoint name", "a.safetensors, b.safetensors")


def plot_args_from_infotext(params: dict) -> dict:
    from modules.scripts.xyz.args import args_from_infotext

    found = args_from_infotext(params)
    assert found is not None
    return found


def test_seeds_fixed_kept_and_varied() -> None:
    request = Txt2ImgRequest(prompt="a", width=64, height=64, seed=-1)
    job, result = _run({"x_type": "Seed", "x_values": "-1, 7", "y_type": "Steps", "y_values": "1,2"}, request)
    seeds = [r.seed for r in job.processed]
    assert seeds[1] == seeds[3] == 7 and seeds[0] == seeds[2] != -1  # -1 fixed once for the whole axis
    assert f'Fixed X Values: "{seeds[0]}, 7"' in result.infotexts[0]
    job, _ = _run({"x_type": "Seed", "x_values": "-1, 7", "no_fixed_seeds": True}, request)
    assert [r.seed for r in job.processed] == [-1, 7]
    job, _ = _run({"x_type": "Steps", "x_values": "1-2", "y_type": "CFG Scale", "y_values": "5,6",
                   "vary_seeds_x": True, "vary_seeds_y": True}, request.model_copy(update={"seed": 100}))
    assert [r.seed for r in job.processed] == [100, 101, 102, 103]


def test_interrupt_returns_the_grid_so_far_and_a_skipped_cell_is_blank() -> None:
    request = Txt2ImgRequest(prompt="a", width=64, height=64, seed=1)
    args = {"x_type": "Steps", "x_values": "1-3", "y_type": "CFG Scale", "y_values": "5,6",
            "include_lone_images": True, "draw_legend": False}

    def stop_after_four(number: int, req) -> None:
        if number == 4:
            job.control.interrupt_event.set()

    job = FakeJob(request, before=stop_after_four)
    result = plot.run_plot(job, XYZArgs(**args))
    assert result.interrupted and len(job.processed) == 5  # the cell running when stopped is kept, no more
    grid = result.images[0]
    assert grid.size == (3 * 64, 2 * 64)
    assert grid.getpixel((2 * 64 + 5, 64 + 5)) == (0, 0, 0)  # never made: blank
    assert grid.getpixel((5, 5)) != (0, 0, 0) and len(result.images) == 1 + 5

    job = FakeJob(request)
    job.control.interrupt_event.set()  # stopped before the first cell: a blank grid with the grid's parameters
    result = plot.run_plot(job, XYZArgs(**args))
    assert not job.processed and result.interrupted and len(result.images) == 1
    assert result.infotexts[0] == 'a\nScript: X/Y/Z plot, X Type: Steps, X Values: 1-3, Y Type: CFG Scale, ' \
                                  'Y Values: "5,6"'

    job = FakeJob(request, before=lambda n, req: job.control.skip_event.set() if n == 1 else None)
    result = plot.run_plot(job, XYZArgs(**args))
    assert len(job.processed) == 6 and not result.interrupted
    assert result.images[0].getpixel((64 + 5, 5)) == (0, 0, 0)  # the skipped cell
    assert result.images[0].getpixel((2 * 64 + 5, 5)) != (0, 0, 0) and len(result.images) == 1 + 5


def test_cell_requests_apply_each_axis() -> None:
    request = Txt2ImgRequest(prompt="a red cat, big", negative_prompt="red", width=64, height=64, seed=3,
                             styles=["s1"])
    plan = plot.plan_grid(request, XYZArgs(x_type="Prompt S/R", x_values="red, blue", y_type="Prompt order",
                                           y_values="cat, big", z_type="Size", z_values="64x64, 128x64"),
                          rng=random.Random(0))
    cell = plan.requests[(1, 1, 1)]
    assert (cell.prompt, cell.negative_prompt, cell.width, cell.height) == ("a blue big, cat", "blue", 128, 64)
    assert plan.axes[0].labels == ["red", "blue"] and plan.axes[1].labels == ["cat, big", "big, cat"]
    assert plan.axes[2].labels == ["Size: 64x64", "Size: 128x64"]
    plan = plot.plan_grid(request, XYZArgs(x_type="Styles", x_values="s2", y_type="Var. strength",
                                           y_values="0.25", z_type="Clip skip", z_values="2"))
    cell = plan.requests[(0, 0, 0)]
    assert (cell.styles, cell.subseed_strength, cell.clip_skip) == (["s1", "s2"], 0.25, 2)
    with_units = Txt2ImgRequest(prompt="a", width=64, height=64, seed=1,
                                controlnet_units=[{"module": "none", "model": "m"}, {"enabled": False}])
    plan = plot.plan_grid(with_units, XYZArgs(x_type="[ControlNet] Weight", x_values="0.5, 1.5",
                                              y_type="[ControlNet] Guidance End", y_values="0.6"))
    units = plan.requests[(0, 0, 0)].controlnet_units
    assert (units[0].weight, units[0].guidance_end, units[1].weight) == (0.5, 0.6, 1.0)  # enabled units only
    assert plan.axes[0].labels == ["[ControlNet] Weight: 0.5", "[ControlNet] Weight: 1.5"]
    img = Img2ImgRequest(prompt="a", init_images=["x"], width=64, height=64, seed=1)
    plan = plot.plan_grid(img, XYZArgs(x_type="Denoising", x_values="0.25-0.75 [3]", y_type="Sampler",
                                       y_values_dropdown=["Euler", "DDIM"]))
    assert [plan.requests[(i, 1, 0)].denoising_strength for i in range(3)] == [0.25, 0.5, 0.75]
    assert plan.requests[(0, 1, 0)].sampler_name == "DDIM" and plan.axes[1].text == "Euler,DDIM"
    plan = plot.plan_grid(request, XYZArgs(x_type="RNG source", x_values="CPU, gpu"))
    assert [plan.requests[(i, 0, 0)].randn_source for i in range(2)] == ["CPU", "GPU"]
    assert plan.axes[0].labels == ["CPU", "gpu"]


# --- on a tiny SD1 model ------------------------------------------------------------------------------------


def _submit(ctx, request):
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    job = submit_job(ctx, request, owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job.result


def test_real_grids_on_a_tiny_model(studio_factory) -> None:
    srv = studio_factory(("--nowebui",))
    ctx = srv.ctx
    base = dict(prompt="a red circle", steps=2, width=64, height=64, seed=11, sampler_name="Euler")
    named = {"x_type": "Steps", "x_values": "2,3", "y_type": "CFG Scale", "y_values": "5,7",
             "include_lone_images": True}
    result = _submit(ctx, Txt2ImgRequest(**base, script={"name": "X/Y/Z plot", "args": named}))
    sub = layout_annotations(64, 64, labels(["Steps: 2", "Steps: 3"]), labels(["CFG Scale: 5.0", "CFG Scale: 7.0"]))
    assert result.images[0].size == sub.size and len(result.images) == 5
    grid_path = result.paths[0]
    assert grid_path is not None and grid_path.is_file() and "grids" in str(grid_path)
    assert all(path is not None and path.is_file() for path in result.paths[1:])
    assert 'X Type: Steps, X Values: "2,3", Y Type: CFG Scale, Y Values: "5,7"' in Image.open(grid_path).info[
        "parameters"]
    # the labels are drawn: dark pixels in the top band and the left gutter
    top = result.images[0].crop((sub.pad_left, 0, sub.size[0], sub.pad_top)).convert("L")
    left = result.images[0].crop((0, sub.pad_top, sub.pad_left, sub.size[1])).convert("L")
    assert top.getextrema()[0] < 128 and left.getextrema()[0] < 128
    # a cell equals the same settings run alone, pixel for pixel
    alone = _submit(ctx, Txt2ImgRequest(**{**base, "steps": 3, "cfg_scale": 7.0}))
    assert result.images[4].tobytes() == alone.images[0].tobytes()  # cell (x=1, y=1)
    cell = result.images[0].crop((sub.pad_left + 64, sub.pad_top + 64, sub.pad_left + 128, sub.pad_top + 128))
    assert cell.tobytes() == alone.images[0].tobytes()
    # A1111's positional form gives the same grid
    positional = [4, "2,3", [], 6, "5,7", [], 0, "", [], True, True, False, False, False, False, False, 0, False]
    script = ctx.scripts.registry.selectable_script("x/y/z plot", "txt2img")
    again = _submit(ctx, Txt2ImgRequest(**base, script={"name": "x/y/z plot",
                                                        "args": script.args_from_positional(positional, "txt2img")}))
    assert again.images[0].tobytes() == result.images[0].tobytes()
    # pasting the grid's infotext back gives the same axes
    pasted = script.args_from_infotext(parse_infotext(result.infotexts[0]))
    assert script.parse_args({**named, **pasted}) == script.parse_args(named)

    # X x Y x Z: 3 x 2 x 2, Z side by side under its labels
    args = {"x_type": "Steps", "x_values": "2-3 [3]", "y_type": "Seed", "y_values": "1, 2", "z_type": "CFG Scale",
            "z_values": "4, 6", "margin_size": 2}
    result = _submit(ctx, Txt2ImgRequest(**base, script={"name": "X/Y/Z plot", "args": args}))
    sub = layout_annotations(64, 64, labels(["Steps: 2", "Steps: 2", "Steps: 3"]), labels(["Seed: 1", "Seed: 2"]), 2)
    main = layout_annotations(*sub.size, labels(["CFG Scale: 4.0", "CFG Scale: 6.0"]), labels([""]))
    assert len(result.images) == 1 and result.images[0].size == main.size
    assert main.size == (2 * (3 * 64 + 48 + 4), 2 * 64 + 2 + sub.pad_top + main.pad_top)


def test_grids_that_cannot_run_are_refused_before_any_image(studio_factory) -> None:
    from modules.jobs.submit import submit_job

    srv = studio_factory(("--nowebui",))
    ctx = srv.ctx
    outputs = Path(ctx.paths.output_dir("txt2img"))
    before = sorted(outputs.rglob("*.png")) if outputs.exists() else []
    request = Txt2ImgRequest(prompt="x", steps=2, width=64, height=64,
                             script={"name": "X/Y/Z plot", "args": {"x_type": "Seed", "x_values": "1-11",
                                                                    "y_type": "Steps", "y_values": "1-10"}})
    with pytest.raises(InvalidRequestError, match="110 cells"):
        submit_job(ctx, request, owner="t", source="test")
    # every cell is checked as a plain job of its kind: checkpoint names, sizes against the model
    from modules.models.errors import ModelLoadError

    def grid(args: dict) -> Txt2ImgRequest:
        return Txt2ImgRequest(prompt="x", steps=2, width=64, height=64, script={"name": "X/Y/Z plot", "args": args})

    with pytest.raises(ModelLoadError, match="no-such-model"):
        submit_job(ctx, grid({"x_type": "Checkpoint name", "x_values": f"{srv.checkpoints[0].name}, no-such-model"}),
                   owner="t", source="test")
    with pytest.raises(InvalidRequestError, match="width 100 is not a multiple of 8"):
        submit_job(ctx, grid({"x_type": "Size", "x_values": "64x64, 100x64"}), owner="t", source="test")
    with pytest.raises(InvalidRequestError, match="line 2.*unknown option"):
        submit_job(ctx, Txt2ImgRequest(prompt="x", steps=2, width=64, height=64, script={
            "name": "Prompts from file or textbox", "args": {"prompt_txt": "a\n--prompt b --nope 1"}}),
                   owner="t", source="test")
    after = sorted(outputs.rglob("*.png")) if outputs.exists() else []
    assert after == before


def test_real_grid_skip_and_interrupt(studio_factory) -> None:
    from modules.jobs.submit import submit_job

    srv = studio_factory(("--nowebui",))
    ctx = srv.ctx
    calls: list[int] = []

    def on_step(info) -> None:  # 3 steps a cell: skip the 2nd cell, stop in the 3rd
        calls.append(info.step)
        if len(calls) == 4:
            ctx.queue.skip()
        elif len(calls) == 7:
            ctx.queue.interrupt()

    ctx.scripts.callbacks.on("step", on_step, owner="test")
    try:
        request = Txt2ImgRequest(prompt="a red circle", steps=3, width=64, height=64, seed=5, sampler_name="Euler",
                                 script={"name": "X/Y/Z plot", "args": {
                                     "x_type": "CFG Scale", "x_values": "4-7", "draw_legend": False,
                                     "include_lone_images": True}})
        job = submit_job(ctx, request, owner="t", source="test")
        ctx.queue.wait(job.id, 300)
    finally:
        ctx.scripts.callbacks.remove_owner("test")
    result = job.result
    assert result is not None and result.interrupted, job.error
    grid = result.images[0]
    assert grid.size == (4 * 64, 64)

    def blank(col: int) -> bool:
        return grid.crop((col * 64, 0, col * 64 + 64, 64)).getextrema() == ((0, 0), (0, 0), (0, 0))

    assert [blank(col) for col in range(4)] == [False, True, False, True]  # skipped, made (stopped), never made
    assert len(result.images) == 1 + 2 and len(calls) < 10


def test_real_img2img_grid(studio_factory) -> None:
    from modules.images.codec import encode_png_base64

    srv = studio_factory(("--nowebui",))
    ctx = srv.ctx
    source = Image.new("RGB", (64, 64), (200, 40, 40))
    base = dict(prompt="a red circle", steps=2, width=64, height=64, seed=9, sampler_name="Euler",
                init_images=[encode_png_base64(source, None)])
    args = {"x_type": "Denoising", "x_values": "0.5, 1", "include_lone_images": True}
    result = _submit(ctx, Img2ImgRequest(**base, script={"name": "X/Y/Z plot", "args": args}))
    layout = layout_annotations(64, 64, labels(["Denoising: 0.5", "Denoising: 1.0"]), labels([""]))
    assert result.images[0].size == layout.size and len(result.images) == 3
    assert "X Type: Denoising" in result.infotexts[0] and "img2img-grids" in str(result.paths[0])
    alone = _submit(ctx, Img2ImgRequest(**{**base, "denoising_strength": 0.5}))
    assert result.images[1].tobytes() == alone.images[0].tobytes()


def test_a_precheck_that_breaks_is_reported_and_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "broken_check.py").write_text(
        "from modules.scripts.script import Script\n"
        "class Broken(Script):\n"
        "    title = 'Broken check'\n"
        "    def precheck(self, request, args):\n"
        "        return request.no_such_field\n")
    host = ScriptHost(repo, tmp_path / "data", builtin_digests={}, enable=("broken_check",))
    host.start()
    with pytest.raises(ScriptArgsError, match="'Broken check' could not check.*AttributeError"):
        host.precheck(Txt2ImgRequest(script={"name": "broken check"}), "txt2img")
    assert host.callbacks.problems[-1].where == "Broken check.precheck"
