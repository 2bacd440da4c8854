"""The Loopback script (A1111's img2img built-in): strength curves as A1111 computes them, each loop's image
fed to the next, A1111's positional arguments, and the interrogation option refused with a reason."""

from __future__ import annotations

import math

import pytest

from modules.scripts.loopback import LoopbackArgs, plan_loops, strength_at


def test_strength_curves() -> None:
    assert [strength_at(i, 3, 0.75, 0.25, "Linear") for i in range(3)] == [0.75, 0.5, 0.25]
    assert strength_at(1, 3, 0.0, 1.0, "Aggressive") == pytest.approx(math.sin(math.pi / 4))
    assert strength_at(1, 3, 0.0, 1.0, "Lazy") == pytest.approx(1 - math.cos(math.pi / 4))
    assert strength_at(0, 1, 0.3, 0.9, "Linear") == 0.3


def test_refusals() -> None:
    from modules.generation.requests import Img2ImgRequest, Txt2ImgRequest
    from modules.generation.validation import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="Understand tab"):
        plan_loops(Img2ImgRequest(init_images=["x"]), LoopbackArgs(append_interrogation="CLIP"))
    with pytest.raises(InvalidRequestError, match="img2img"):
        plan_loops(Txt2ImgRequest(), LoopbackArgs())


def test_loopback_on_a_tiny_model(studio_factory) -> None:
    from PIL import Image

    from modules.generation.requests import Img2ImgRequest
    from modules.generation.runners.img2img import encode_request_image
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    ctx = studio_factory(("--nowebui",)).ctx
    init = encode_request_image(Image.new("RGB", (64, 64), (200, 40, 40)))
    script = ctx.scripts.registry.selectable_script("loopback", "img2img")
    named = script.args_from_positional([3, 0.25, "Linear", "None"], "img2img")
    job = submit_job(ctx, Img2ImgRequest(prompt="a shape", init_images=[init], steps=3, seed=9,
                                         denoising_strength=0.75, sampler_name="Euler",
                                         script={"name": "Loopback", "args": named}), owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    texts = job.result.infotexts
    assert len(job.result.images) == 3 and [t.count("Denoising strength: ") for t in texts] == [1, 1, 1]
    assert "Denoising strength: 0.75" in texts[0] and "Denoising strength: 0.5" in texts[1] and \
        "Denoising strength: 0.25" in texts[2]
    assert "Seed: 9," in texts[0] and "Seed: 11," in texts[2]
