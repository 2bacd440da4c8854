"""The example extension: an always-on script with a UI, a selectable script, a tab, an API route, a setting
and a step callback. docs/extensions.md explains each part."""

from __future__ import annotations

from pydantic import BaseModel, Field

from modules.scripts.running import merge_results
from modules.scripts.script import Script

GREETING_KEY = "example_greeting"


class VignetteArgs(BaseModel):
    strength: float = Field(0.0, ge=0.0, le=1.0, description="how dark the corners get (0: off)")


class Vignette(Script):
    """Always on: darkens the corners of each image before it is saved."""

    title = "Vignette"
    alwayson = True
    Args = VignetteArgs

    def postprocess_image(self, p, args, image):
        if args.strength <= 0:
            return
        from PIL import Image, ImageDraw, ImageFilter

        picture = image.image.convert("RGB")
        width, height = picture.size
        mask = Image.new("L", picture.size, 0)
        ImageDraw.Draw(mask).ellipse((width * 0.05, height * 0.05, width * 0.95, height * 0.95), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1, min(width, height) // 10)))
        dark = Image.new("RGB", picture.size, (0, 0, 0))
        shaded = Image.composite(picture, Image.blend(picture, dark, args.strength), mask)
        image.image = shaded
        image.infotext["Vignette"] = args.strength

    def args_from_infotext(self, params):
        if "Vignette" not in params:
            return None
        return {"strength": float(params["Vignette"])}


class VariationsArgs(BaseModel):
    suffixes: str = Field("red, blue", description="comma-separated: one image per suffix added to the prompt")


class PromptVariations(Script):
    """Selectable: one generation per suffix, then a grid of them."""

    title = "Example: prompt variations"
    Args = VariationsArgs

    def run(self, p, args):
        suffixes = [part.strip() for part in args.suffixes.split(",") if part.strip()] or [""]
        results = []
        with p.cells(len(suffixes), "variation"):
            for suffix in suffixes:
                prompt = f"{p.request.prompt}, {suffix}" if suffix else p.request.prompt
                results.append(p.process(p.request.model_copy(update={"prompt": prompt})))
        result = merge_results(results)
        if len(result.images) > 1:
            from PIL import Image

            width = sum(image.width for image in result.images)
            grid = Image.new("RGB", (width, max(image.height for image in result.images)))
            x = 0
            for image in result.images:
                grid.paste(image, (x, 0))
                x += image.width
            p.save_grid(grid, f"{p.request.prompt}\nScript: {self.title}, Variations: {args.suffixes}")
        return result

    def args_from_infotext(self, params):
        if params.get("Script") != self.title:
            return None
        return {"suffixes": str(params.get("Variations", ""))}


def setup(api):
    """Called once when the extension is loaded: register the callbacks."""
    steps_seen = {"count": 0}   # this load's own state (a disabled and re-enabled extension starts again)

    def on_step(info):           # StepInfo: step, total, timestep, latents, task, batch_index
        steps_seen["count"] += 1

    def on_settings(params):     # UiSettings: add(key, default, label, section)
        params.add(GREETING_KEY, "hello", "Greeting answered by GET /example/hello", section="Example extension")

    def on_tabs(params):         # UiTabs: add(title, build)
        def build():
            import gradio as gr

            gr.Markdown("This tab comes from the **example** extension (extensions/example).")
            count = gr.Number(label="Sampling steps seen since the extension was loaded", interactive=False,
                              elem_id="example_steps_seen")
            gr.Button("Refresh", elem_id="example_refresh").click(lambda: steps_seen["count"], outputs=[count],
                                                                  api_visibility="private")

        params.add("Example", build)

    def on_app_started(params):  # AppStarted: app (FastAPI), ctx
        from modules.scripts.ext_settings import ExtensionOptions

        options = ExtensionOptions.for_context(params.ctx)

        def hello() -> dict:
            return {"greeting": options.get(GREETING_KEY), "steps_seen": steps_seen["count"]}

        params.app.add_api_route("/example/hello", hello, methods=["GET"], tags=["extension: example"])

    api.on("step", on_step)
    api.on("ui_settings", on_settings)
    api.on("ui_tabs", on_tabs)
    api.on("app_started", on_app_started)
