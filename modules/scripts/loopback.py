"""Loopback (A1111's built-in img2img script): each result becomes the next loop's init image.

A1111's semantics: ``loops`` img2img passes per batch; the denoising strength goes from the request's to
``final_denoising_strength`` along a curve (Linear, Aggressive: fast at first, Lazy: slow at first); the seed
goes up by one each loop (a seed of -1 is fixed to one random seed first). Every loop's image is returned,
in order. Appending an interrogated caption to the prompt (A1111's CLIP / DeepBooru option) is refused with
a reason: use the Understand tab's captions instead.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult
    from modules.scripts.script import ScriptJob

TITLE = "Loopback"
A1111_ARGS: tuple[str, ...] = ("loops", "final_denoising_strength", "denoising_curve", "append_interrogation")
SEED_RANGE = 4294967294


class LoopbackArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loops: int = Field(4, ge=1, le=32, title="Loops")
    final_denoising_strength: float = Field(0.5, ge=0.0, le=1.0, title="Final denoising strength")
    denoising_curve: Literal["Aggressive", "Linear", "Lazy"] = Field("Linear", title="Denoising strength curve")
    append_interrogation: Literal["None", "CLIP", "DeepBooru"] = Field(
        "None", title="Append interrogated prompt at each iteration",
        description="only None here: captions come from the Understand tab")


def strength_at(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    """A1111's ``calculate_denoising_strength`` for loop ``loop`` (0-based) of ``loops``."""
    if loops == 1:
        return initial
    progress = loop / (loops - 1)
    if curve == "Aggressive":
        progress = math.sin(progress * math.pi * 0.5)
    elif curve == "Lazy":
        progress = 1 - math.cos(progress * math.pi * 0.5)
    return initial + (final - initial) * progress


def plan_loops(request: "GenerationRequest", args: LoopbackArgs) -> list["GenerationRequest"]:
    """The first loop's request of each batch (the later ones differ by init image, strength and seed)."""
    if args.append_interrogation != "None":
        raise InvalidRequestError(f"Loopback: appending a {args.append_interrogation} interrogation is not offered "
                                  "here (use the Understand tab's captions); set it to None")
    if getattr(request, "kind", "") != "img2img" or not getattr(request, "init_images", None):
        raise InvalidRequestError("Loopback runs in img2img with an init image")
    return [request.model_copy(update={"n_iter": 1, "batch_size": 1, "script": None})]


def run_loops(p: "ScriptJob", args: LoopbackArgs) -> "GenerationResult":
    from modules.generation.runners.img2img import encode_request_image
    from modules.scripts.running import merge_results

    request = p.request
    plan_loops(request, args)
    seed = request.seed if request.seed != -1 else random.Random().randrange(SEED_RANGE)
    initial = request.denoising_strength
    results = []
    with p.cells(args.loops * request.n_iter, "loop"):
        for batch in range(request.n_iter):
            init = request.init_images
            for loop in range(args.loops):
                strength = strength_at(loop, args.loops, initial, args.final_denoising_strength, args.denoising_curve)
                cell = request.model_copy(update={"n_iter": 1, "batch_size": 1, "script": None, "init_images": init,
                                                  "denoising_strength": strength,
                                                  "seed": seed + batch * args.loops + loop})
                result = p.process(cell, label=f"loop {loop + 1}")
                results.append(result)
                if p.control.should_stop or not result.images:
                    return merge_results(results)
                init = [encode_request_image(result.images[0])]
    return merge_results(results)
