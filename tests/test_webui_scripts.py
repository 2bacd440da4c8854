"""Scripts and extensions in the page: the Script dropdown and the argument widgets in the app config, a txt2img
through the Gradio API with the example extension's always-on Vignette applied, infotext paste filling the
script widgets (after the infotext_pasted callbacks), the Extensions tab listing an unapproved extension as
"new" without running it and a broken one with its error, the example's tab, setting and API route (behind
--api-auth like every API route)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from PIL import Image

MARKER_EXT = textwrap.dedent('''
    from pathlib import Path
    Path(__file__).parents[3].joinpath("marker.ran").write_text("imported")
''')


BAD_TAB = textwrap.dedent('''
    def setup(api):
        def build():
            raise RuntimeError("no tab today")

        api.on("ui_tabs", lambda tabs: tabs.add("Bad tab", build))
''')


def _prepare(data: Path, ckpt: Path) -> None:
    for name, body in (("marker", MARKER_EXT), ("broken", "def oops(:\n"), ("badtab", BAD_TAB)):
        folder = data / "extensions" / name / "scripts"
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(body)


@pytest.fixture(scope="module")
def ui_server(studio_factory):
    return studio_factory(["--api", "--enable-extension", "example,broken,badtab"], with_ui=True, name="scripts-ui",
                          prepare=_prepare)


def _config(srv) -> dict[str, Any]:
    with srv.client() as http:
        return http.get("/config").json()


def _by_elem_id(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["props"]["elem_id"]: c for c in config["components"] if c.get("props", {}).get("elem_id")}


def _choices(component: dict[str, Any]) -> list[Any]:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in component["props"]["choices"]]


def test_script_dropdown_and_widgets_are_in_the_page(ui_server) -> None:
    comps = _by_elem_id(_config(ui_server))
    for tab in ("txt2img", "img2img"):
        dropdown = comps[f"{tab}_script_list"]
        assert dropdown["type"] == "dropdown" and dropdown["props"]["value"] == "None"
        assert {"None", "Example: prompt variations"} <= set(_choices(dropdown))
        strength = comps[f"{tab}_script_vignette_strength"]  # the always-on accordion's slider, from Args
        assert strength["type"] == "slider"
        assert (strength["props"]["minimum"], strength["props"]["maximum"]) == (0.0, 1.0)
        assert "corners" in strength["props"]["info"]
        suffixes = comps[f"{tab}_script_example_prompt_variations_suffixes"]
        assert suffixes["type"] == "textbox" and suffixes["props"]["value"] == "red, blue"
    group = comps["txt2img_script_example_prompt_variations"]
    assert group["props"]["visible"] is False  # shown only once the script is chosen


def _run_parameter(srv, elem_id: str) -> str:
    """The /run parameter name of the widget ``elem_id`` (the API leaves gr.State inputs out)."""
    config = _config(srv)
    by_id = {c["id"]: c for c in config["components"]}
    run = next(d for d in config["dependencies"] if d.get("api_name") == "run")
    visible = [i for i in run["inputs"] if by_id[i]["type"] != "state"]
    index = next(n for n, i in enumerate(visible) if by_id[i]["props"].get("elem_id") == elem_id)
    client = Client(srv.base_url + "/", verbose=False)
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/run"]["parameters"][index][
        "parameter_name"]


def test_txt2img_through_the_gradio_api_applies_the_alwayson_vignette(ui_server) -> None:
    name = _run_parameter(ui_server, "txt2img_script_vignette_strength")
    client = Client(ui_server.base_url + "/", verbose=False)
    plain = client.predict("a red circle", "", "Euler", "Automatic", 2, 64, 64, 1, 1, 7, 11, api_name="/run")[0]
    answer = client.predict("a red circle", "", "Euler", "Automatic", 2, 64, 64, 1, 1, 7, 11, api_name="/run",
                            **{name: 0.9})
    shaded, status = answer[0], answer[1]
    infotext = next(value for value in answer if isinstance(value, str) and "Steps:" in value)
    assert "Vignette: 0.9" in infotext, (status, infotext)
    before = Image.open(plain[0]["image"]).convert("RGB")
    after = Image.open(shaded[0]["image"]).convert("RGB")
    corner = sum(after.getpixel((0, 0))), sum(before.getpixel((0, 0)))
    centre = sum(after.getpixel((32, 32))), sum(before.getpixel((32, 32)))
    assert corner[0] < corner[1] * 0.5 or corner[1] < 30, corner  # the corner darkened
    assert abs(centre[0] - centre[1]) < 40, centre                  # the centre kept


def test_infotext_paste_fills_the_script_widgets_after_the_pasted_callbacks(ui_server) -> None:
    import gradio as gr

    from modules.scripts.callbacks import InfotextPasted
    from webui.params import Fields, paste_updates
    from webui.scripts_section import SELECT, arg_key, build_scripts
    from webui.ui_config import UiDefaults

    ctx = ui_server.ctx
    seen: list[str] = []

    def rename(params: InfotextPasted) -> None:  # an extension renaming an old key
        seen.append(params.text)
        if "Old variations" in params.params:
            params.params["Variations"] = params.params.pop("Old variations")

    ctx.scripts.callbacks.on("infotext_pasted", rename, owner="test")
    try:
        fields = Fields()
        with gr.Blocks():
            build_scripts(ctx, UiDefaults(None), "txt2img", fields)
        text = ("a cat\nSteps: 3, Seed: 5, Size: 64x64, Script: Example: prompt variations, "
                "Old variations: \"green, pink\", Vignette: 0.4")
        updates, note = paste_updates(fields, text)
    finally:
        ctx.scripts.callbacks.remove_owner("test")
    values = dict(zip(fields.names, updates))
    assert seen == [text.strip()]
    assert values[SELECT]["value"] == "Example: prompt variations"
    assert values[arg_key("Example: prompt variations", "suffixes")]["value"] == "green, pink"
    assert values[arg_key("Vignette", "strength")]["value"] == 0.4
    assert "Script" not in note and "Variations" not in note and "Vignette" not in note, note


def test_collect_folds_widgets_into_the_typed_request_fields(ui_server) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from webui.scripts_section import SELECT, arg_key, collect_scripts

    values = {"prompt": "x", SELECT: "Example: prompt variations",
              arg_key("Example: prompt variations", "suffixes"): "a, b", arg_key("Vignette", "strength"): 0.5,
              arg_key("Gone", "amount"): 3}
    out = collect_scripts(values, "txt2img", ui_server.ctx)
    req = Txt2ImgRequest(**out)
    assert req.script.name == "Example: prompt variations" and req.script.args == {"suffixes": "a, b"}
    assert req.alwayson_scripts == {"Vignette": {"strength": 0.5}}  # a script gone since is left out
    assert collect_scripts({"prompt": "x", SELECT: "None"}, "txt2img", ui_server.ctx) == {"prompt": "x"}


def test_extensions_tab_lists_new_and_broken_without_running_them(ui_server) -> None:
    comps = _by_elem_id(_config(ui_server))
    table = comps["extensions_table"]["props"]["value"]
    rows = {row[0]: row for row in table["data"]}
    assert rows["marker"][2].startswith("new")
    assert not (ui_server.root / "data" / "marker.ran").exists()  # listed, never imported
    assert "SyntaxError" in rows["broken"][5] and str(ui_server.root) not in rows["broken"][5]
    assert rows["example"][2].startswith("approved") and "Vignette" in rows["example"][3]
    assert "extension broken" in comps["extensions_problems"]["props"]["value"]
    assert comps["extensions_install"]["type"] == "button"


def test_example_tab_setting_and_route(ui_server) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.submit import submit_job

    config = _config(ui_server)
    comps = _by_elem_id(config)
    assert "example_steps_seen" in comps  # the ui_tabs tab was built
    tabs = {c["props"].get("label"): c for c in config["components"] if c["type"] == "tabitem"}
    assert tabs["Example"]["props"]["visible"] is not False
    assert tabs["Bad tab"]["props"]["visible"] is False  # its build raised: hidden and reported
    assert any(p.owner == "extension badtab" and "no tab today" in p.message
               for p in ui_server.ctx.scripts.callbacks.problems)
    assert comps["setting_example_greeting"]["props"]["value"] == "hello"  # the ui_settings option
    with ui_server.client() as http:
        before = http.get("/example/hello").json()
        assert before["greeting"] == "hello"
        from modules.scripts.ext_settings import ExtensionOptions

        ExtensionOptions.for_context(ui_server.ctx).update({"example_greeting": "bonjour"})
        job = submit_job(ui_server.ctx, Txt2ImgRequest(prompt="x", steps=3, width=64, height=64, seed=1,
                                                       sampler_name="Euler"), owner="t", source="test")
        assert job.done.wait(120) and job.result is not None, job.error
        after = http.get("/example/hello").json()
    assert after["greeting"] == "bonjour"
    assert after["steps_seen"] == before["steps_seen"] + 3  # the step callback saw each step


def test_extension_route_is_behind_api_auth(studio_factory) -> None:
    srv = studio_factory(["--api", "--api-auth", "user:secret", "--enable-extension", "example"], with_ui=True,
                         name="scripts-auth", load=False)
    assert httpx.get(srv.base_url + "/example/hello").status_code == 401
    answer = httpx.get(srv.base_url + "/example/hello", auth=("user", "secret"))
    assert answer.status_code == 200 and answer.json()["greeting"] == "hello"


def test_widgets_from_args() -> None:
    import enum
    from typing import Literal

    from pydantic import BaseModel, Field

    from modules.scripts.arg_widgets import WidgetValueError, args_from_widgets, widget_specs

    class Mode(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    class Args(BaseModel):
        count: int = Field(3, ge=1, le=9, description="how many")
        scale: float = Field(0.5, ge=0, le=1)
        seed: int = -1
        sharp: bool = True
        axis: Literal["x", "y"] = "y"
        mode: Mode = Mode.SLOW
        label: str | None = None
        values: list[int] = Field(default_factory=lambda: [1, 2])

    specs = {spec.name: spec for spec in widget_specs(Args)}
    assert (specs["count"].kind, specs["count"].step, specs["count"].info) == ("slider", 1, "how many")
    assert specs["scale"].kind == "slider" and specs["scale"].step == 0.01
    assert specs["seed"].kind == "number" and specs["sharp"].kind == "checkbox"
    assert specs["axis"].choices == ("x", "y") and specs["mode"].choices == ("fast", "slow")
    assert specs["mode"].default == "slow" and specs["label"].kind == "textbox" and specs["label"].default == ""
    assert specs["values"].kind == "json" and specs["values"].default == "[1, 2]"
    args = args_from_widgets("T", Args, {"count": 4.0, "values": "[3]", "unknown": 1})
    assert args == {"count": 4, "values": [3]} and isinstance(args["count"], int)
    with pytest.raises(WidgetValueError, match="T.*Values.*JSON"):
        args_from_widgets("T", Args, {"values": "[3"})


def test_pasting_an_xyz_grid_infotext_picks_the_xyz_plot(ui_server) -> None:
    import gradio as gr

    from webui.params import Fields, paste_updates
    from webui.scripts_section import SELECT, arg_key, build_scripts
    from webui.ui_config import UiDefaults

    fields = Fields()
    with gr.Blocks():
        build_scripts(ui_server.ctx, UiDefaults(None), "txt2img", fields)
    text = 'a cat\nSteps: 3, Seed: 5, Script: X/Y/Z plot, X Type: Steps, X Values: "1,2"'
    updates, note = paste_updates(fields, text)
    values = dict(zip(fields.names, updates))
    assert values[SELECT]["value"] == "X/Y/Z plot"
    assert values[arg_key("X/Y/Z plot", "x_type")]["value"] == "Steps"
    assert values[arg_key("X/Y/Z plot", "x_values")]["value"] == "1,2"
    assert "X Values" not in note and "Script" not in note, note
    plain, _ = paste_updates(fields, "a dog\nSteps: 3, Seed: 5")  # no Script: the dropdown is left alone
    assert dict(zip(fields.names, plain))[SELECT] == gr.skip()
