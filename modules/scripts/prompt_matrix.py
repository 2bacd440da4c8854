"""Prompt matrix (A1111's built-in script): ``a cat|red|in a hat`` makes one image per combination of the
optional parts after the first ``|`` (2**n images), in a grid labelled with the parts each column and
row has (black) or lacks (grey, struck through).

A1111's semantics: the first part always stays, the optional ones are stripped (spaces, then commas) and
joined with ", " (or " " for the "space" delimiter), after the first part or, with "put variable parts at
start", before it; on the negative prompt with ``prompt_type="negative"``. Every image has the job's seed
(a seed of -1 is fixed to one random seed), or seed + its index with "different seeds". The grid has
``2 ** (n // 2)`` rows; it is returned first, then every image.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult
    from modules.scripts.script import ScriptJob

TITLE = "Prompt matrix"
A1111_ARGS: tuple[str, ...] = ("put_at_start", "different_seeds", "prompt_type", "variations_delimiter",
                               "margin_size")
#: more optional parts than this (2**7 = 128 images) are refused before anything runs
MAX_PARTS = 7
SEED_RANGE = 4294967294


class PromptMatrixArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    put_at_start: bool = Field(False, title="Put variable parts at start of prompt")
    different_seeds: bool = Field(False, title="Use different seed for each picture")
    prompt_type: Literal["positive", "negative"] = Field("positive", title="Select prompt",
                                                         description="the prompt holding the parts")
    variations_delimiter: Literal["comma", "space"] = Field("comma", title="Select joining char")
    margin_size: int = Field(0, title="Grid margins (px)", ge=0, le=500, description="pixels between cells")


def matrix_prompts(text: str, *, put_at_start: bool = False, delimiter: str = "comma") -> tuple[list[str], list[str]]:
    """(the parts split at ``|``, every combination's prompt in A1111's order: bit n of the index = part n+1)."""
    parts = text.split("|")
    joiner = ", " if delimiter == "comma" else " "
    prompts = []
    for number in range(2 ** (len(parts) - 1)):
        chosen = [part.strip().strip(",") for n, part in enumerate(parts[1:]) if number & (1 << n)]
        prompts.append(joiner.join(chosen + [parts[0]] if put_at_start else [parts[0]] + chosen))
    return parts, prompts


def plan_matrix(request: "GenerationRequest", args: PromptMatrixArgs,
                rng: random.Random | None = None) -> tuple[list[str], list["GenerationRequest"]]:
    """(the parts, one checked request per combination) before anything runs."""
    source = request.prompt if args.prompt_type == "positive" else request.negative_prompt
    parts, prompts = matrix_prompts(source, put_at_start=args.put_at_start, delimiter=args.variations_delimiter)
    if len(parts) - 1 > MAX_PARTS:
        raise InvalidRequestError(f"{TITLE}: {len(parts) - 1} optional parts make {len(prompts)} images; "
                                  f"at most {MAX_PARTS} parts ({2 ** MAX_PARTS} images)")
    rng = rng or random.Random()
    seed = request.seed if request.seed != -1 else rng.randrange(SEED_RANGE)
    subseed = request.subseed if request.subseed != -1 else rng.randrange(SEED_RANGE)
    key = "prompt" if args.prompt_type == "positive" else "negative_prompt"
    out = []
    for index, prompt in enumerate(prompts):
        fields = {key: prompt, "seed": (seed + (index if args.different_seeds else 0)) % SEED_RANGE,
                  "subseed": subseed, "batch_size": 1, "n_iter": 1, "script": None}
        try:
            out.append(type(request).model_validate({**request.model_dump(), **fields}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
            raise InvalidRequestError(f"{TITLE}: {problems}") from None
    return parts, out


def matrix_rows(part_count: int) -> int:
    """A1111's rows of the grid for ``part_count`` optional parts."""
    return 1 << (part_count // 2)


def run_matrix(p: "ScriptJob", args: PromptMatrixArgs) -> "GenerationResult":
    from PIL import Image

    from modules.images.grid import annotate_grid, image_grid, prompt_matrix_annotations
    from modules.scripts.running import merge_results

    parts, requests = plan_matrix(p.request, args)
    results = []
    with p.cells(len(requests), "prompt"):
        for request in requests:
            if p.control.should_stop:
                break
            results.append(p.process(request))
    merged = merge_results(results)
    merged.interrupted = merged.interrupted or len(results) < len(requests)
    if not merged.images:
        return merged
    first = merged.images[0]
    cells = [result.images[0] if result.images else Image.new("RGB", first.size) for result in results]
    cells += [Image.new("RGB", first.size)] * (len(requests) - len(cells))
    grid = image_grid(cells, rows=matrix_rows(len(parts) - 1))
    across, down = prompt_matrix_annotations(parts[1:])
    grid = annotate_grid(grid, max(c.width for c in cells), max(c.height for c in cells), across, down,
                         args.margin_size)
    infotext = merged.infotexts[0]
    path = p.save_grid(grid, infotext, seed=merged.seeds[0])
    for name, value in (("images", grid), ("infotexts", infotext), ("paths", path), ("seeds", merged.seeds[0]),
                        ("subseeds", merged.subseeds[0]), ("prompts", merged.prompts[0]),
                        ("negative_prompts", merged.negative_prompts[0])):
        getattr(merged, name).insert(0, value)
    return merged
