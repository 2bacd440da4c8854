"""Prompts from file or textbox (A1111's built-in script): one generation per non-blank line.

A line is a prompt, or A1111's command-line form ``--prompt "a cat" --steps 20 --cfg_scale 7
--sampler_name "Euler a"`` (split as a shell does; ``--prompt`` and ``--negative_prompt`` take every word up
to the next option). A line whose first word is not an option is the prompt as it stands (A1111 reads it
so too). An unknown option, a missing value or a value of the wrong type is refused naming the line and
the option, never skipped. A line's prompt is put before (``prompt_position="start"``) or after the
job's prompt, joined by a space; its other options replace the job's settings.

"Iterate seed every line" adds ``batch_size * n_iter`` to the seed after each line; with it, or with "Use
same random seed for all lines", a seed of -1 is fixed to one random seed first.
"""

from __future__ import annotations

import random
import shlex
from typing import TYPE_CHECKING, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.requests import GenerationRequest
    from modules.generation.results import GenerationResult
    from modules.scripts.script import ScriptJob

TITLE = "Prompts from file or textbox"
A1111_ARGS: tuple[str, ...] = ("checkbox_iterate", "checkbox_iterate_batch", "prompt_position", "prompt_txt")
#: more lines than this are refused before anything runs
MAX_LINES = 500
SEED_RANGE = 4294967294


class PromptLinesArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    checkbox_iterate: bool = Field(False, title="Iterate seed every line")
    checkbox_iterate_batch: bool = Field(False, title="Use same random seed for all lines")
    prompt_position: Literal["start", "end"] = Field("start", title="Insert prompts at the",
                                                     description="start or end of the job's prompt")
    prompt_txt: str = Field("", title="List of prompt inputs", max_length=1_000_000,
                            description="one prompt per line, or --prompt \"...\" --steps 20 ... options")


def args_from_positional(values: list[Any]) -> dict[str, Any]:
    """A1111's positional ``script_args``: v1.8+ ``[iterate, iterate_batch, prompt_position, prompt_txt]``, or
    the older three ``[iterate, iterate_batch, prompt_txt]`` (told apart by the third value)."""
    from modules.scripts.script import ScriptArgsError

    values = list(values)
    if len(values) > len(A1111_ARGS):
        raise ScriptArgsError(f"script {TITLE!r} takes at most {len(A1111_ARGS)} positional arguments "
                              f"({', '.join(A1111_ARGS)}); got {len(values)}")
    if len(values) == 3 and values[2] not in ("start", "end"):
        return {"checkbox_iterate": values[0], "checkbox_iterate_batch": values[1], "prompt_txt": values[2]}
    return dict(zip(A1111_ARGS, values))


def _string(value: str) -> str:
    return value


def _int(value: str) -> int:
    return int(value)


def _float(value: str) -> float:
    return float(value)


def _bool(value: str) -> bool:
    return value == "true"  # A1111: anything but "true" is False


def _styles(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


#: A1111's ``prompt_tags``: option -> (read the value, the request field it sets)
OPTIONS: dict[str, tuple[Callable[[str], Any], str]] = {
    "sd_model": (_string, "checkpoint"),
    "prompt": (_string, "prompt"),
    "negative_prompt": (_string, "negative_prompt"),
    "styles": (_styles, "styles"),
    "seed": (_int, "seed"),
    "subseed_strength": (_float, "subseed_strength"),
    "subseed": (_int, "subseed"),
    "seed_resize_from_h": (_int, "seed_resize_from_h"),
    "seed_resize_from_w": (_int, "seed_resize_from_w"),
    "sampler_name": (_string, "sampler_name"),
    "batch_size": (_int, "batch_size"),
    "n_iter": (_int, "n_iter"),
    "steps": (_int, "steps"),
    "cfg_scale": (_float, "cfg_scale"),
    "width": (_int, "width"),
    "height": (_int, "height"),
    "do_not_save_samples": (_bool, "save_images"),
    "do_not_save_grid": (_bool, ""),       # this script makes no grid: nothing to leave unsaved
    "restore_faces": (_bool, "!face restoration is not available"),
    "tiling": (_bool, "!tiling is not available"),
}
#: A1111 options refused whatever their value
REFUSED = {
    "sampler_index": "give the sampler by name: --sampler_name",
    "outpath_samples": "output folders cannot be set from a prompt line",
    "outpath_grids": "output folders cannot be set from a prompt line",
    "prompt_for_display": "the prompt shown is the prompt used",
}


def _refuse(line_no: int, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"{TITLE}: line {line_no}: {message}")


def parse_line(line: str, line_no: int = 1) -> dict[str, Any]:
    """One line as request field updates (``{"prompt": line}`` for a plain prompt)."""
    line = line.strip()
    try:
        words = shlex.split(line) if "--" in line else []
    except ValueError:
        words = []
    if not words or not words[0].startswith("--"):
        return {"prompt": line}
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(words):
        word = words[pos]
        if not word.startswith("--"):
            raise _refuse(line_no, f"expected an option starting with --, got {word!r}")
        tag = word[2:]
        if pos + 1 >= len(words):
            raise _refuse(line_no, f"option {word} has no value")
        if tag in ("prompt", "negative_prompt"):
            pos += 1
            text = [words[pos]]
            pos += 1
            while pos < len(words) and not words[pos].startswith("--"):
                text.append(words[pos])
                pos += 1
            out[tag] = " ".join(text)
            continue
        if tag in REFUSED:
            raise _refuse(line_no, f"option {word} is not supported: {REFUSED[tag]}")
        if tag not in OPTIONS:
            raise _refuse(line_no, f"unknown option {word}; options: "
                                   f"{', '.join('--' + name for name in OPTIONS)}")
        read, target = OPTIONS[tag]
        raw = words[pos + 1]
        try:
            value = read(raw)
        except ValueError:
            raise _refuse(line_no, f"option {word}: {raw!r} is not a{'n integer' if read is _int else ' number'}") \
                from None
        if target.startswith("!"):
            if value:
                raise _refuse(line_no, f"option {word} true is not supported: {target[1:]}")
        elif target == "save_images":
            out[target] = not value
        elif target:
            out[target] = value
        pos += 2
    return out


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every non-blank line's request updates; refuses more than :data:`MAX_LINES` lines."""
    lines = [(no, line.strip()) for no, line in enumerate(text.splitlines(), 1) if line.strip()]
    if len(lines) > MAX_LINES:
        raise InvalidRequestError(f"{TITLE}: {len(lines)} lines is more than the limit of {MAX_LINES}")
    return [parse_line(line, no) for no, line in lines]


def _line_request(base: "GenerationRequest", updates: dict[str, Any], position: str, seed: int,
                  line_no: int) -> "GenerationRequest":
    fields = {"seed": seed, **updates, "script": None}
    for key in ("prompt", "negative_prompt"):
        own, given = getattr(base, key), updates.get(key)
        if given and own:
            fields[key] = f"{given} {own}" if position == "start" else f"{own} {given}"
    try:
        return type(base).model_validate({**base.model_dump(), **fields})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise _refuse(line_no, problems) from None


def plan_lines(request: "GenerationRequest", args: PromptLinesArgs,
               rng: random.Random | None = None) -> list["GenerationRequest"]:
    """Every line's request, checked (options, fields, samplers) before anything runs."""
    from modules.generation.sampling.samplers import SamplerError, resolve_sampler

    jobs = parse_lines(args.prompt_txt)
    if not jobs:
        raise InvalidRequestError(f"{TITLE}: the list of prompts is empty")
    seed = request.seed
    if (args.checkbox_iterate or args.checkbox_iterate_batch) and seed == -1:
        seed = (rng or random.Random()).randrange(SEED_RANGE)
    out = []
    for line_no, updates in enumerate(jobs, 1):
        line = _line_request(request, updates, args.prompt_position, seed, line_no)
        try:
            resolve_sampler(line.sampler_name, line.scheduler)
        except SamplerError as exc:
            raise _refuse(line_no, str(exc)) from None
        out.append(line)
        if args.checkbox_iterate and seed != -1:
            seed = (seed + request.batch_size * request.n_iter) % SEED_RANGE
    return out


def run_lines(p: "ScriptJob", args: PromptLinesArgs) -> "GenerationResult":
    """One generation per line, one progress bar; their images in order (no grid, as A1111)."""
    from modules.scripts.running import merge_results

    requests = plan_lines(p.request, args)
    results = []
    with p.cells(len(requests), "line"):
        for request in requests:
            if p.control.should_stop:
                break
            results.append(p.process(request))
    merged = merge_results(results)
    merged.interrupted = merged.interrupted or len(results) < len(requests)
    return merged
