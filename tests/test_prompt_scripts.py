"""Prompt matrix (scripts/prompt_matrix.py) and Prompts from file or textbox (scripts/prompts_from_file.py):
A1111's prompt combinations, seeds and grid; the line options, their refusals, seed iteration; real runs on
a tiny SD1 model."""

from __future__ import annotations

import random

import pytest

from modules.generation.requests import Txt2ImgRequest
from modules.generation.validation import InvalidRequestError
from modules.images.grid import layout_annotations, prompt_matrix_annotations
from modules.scripts.prompt_lines import PromptLinesArgs, parse_line, parse_lines, plan_lines, run_lines
from modules.scripts.prompt_matrix import PromptMatrixArgs, matrix_prompts, plan_matrix, run_matrix
from tests.helpers.script_job import FakeJob

# --- Prompt matrix ---------------------------------------------------------------------------------------------


def test_matrix_prompts_as_a1111() -> None:
    parts, prompts = matrix_prompts("a cat|red, | in a hat")
    assert parts == ["a cat", "red, ", " in a hat"]
    assert prompts == ["a cat", "a cat, red", "a cat, in a hat", "a cat, red, in a hat"]
    assert matrix_prompts("a cat|red|hat", put_at_start=True)[1] == ["a cat", "red, a cat", "hat, a cat",
                                                                     "red, hat, a cat"]
    assert matrix_prompts("a cat|red|hat", delimiter="space")[1][3] == "a cat red hat"
    assert matrix_prompts("no parts")[1] == ["no parts"]


def test_matrix_seeds_negative_prompt_and_limit() -> None:
    request = Txt2ImgRequest(prompt="p", negative_prompt="ugly|blurry", seed=-1, batch_size=2, width=64, height=64)
    parts, requests = plan_matrix(request, PromptMatrixArgs(prompt_type="negative"), rng=random.Random(1))
    assert [r.negative_prompt for r in requests] == ["ugly", "ugly, blurry"]
    assert len({r.seed for r in requests}) == 1 and requests[0].seed != -1 and requests[0].batch_size == 1
    _, requests = plan_matrix(request.model_copy(update={"seed": 10, "prompt": "a|b|c"}),
                              PromptMatrixArgs(different_seeds=True))
    assert [r.seed for r in requests] == [10, 11, 12, 13]
    with pytest.raises(InvalidRequestError, match="at most 7 parts"):
        plan_matrix(request.model_copy(update={"prompt": "a" + "|x" * 8}), PromptMatrixArgs())


def test_matrix_grid_layout_without_a_model() -> None:
    job = FakeJob(Txt2ImgRequest(prompt="a cat|red|in a hat|at night", width=64, height=64, seed=4, steps=1))
    result = run_matrix(job, PromptMatrixArgs(margin_size=2))
    across, down = prompt_matrix_annotations(["red", "in a hat", "at night"])
    layout = layout_annotations(64, 64, across, down, 2)
    assert (layout.cols, layout.rows) == (4, 2)
    assert result.images[0].size == layout.size and len(result.images) == 1 + 8
    assert [r.prompt for r in job.processed][:3] == ["a cat", "a cat, red", "a cat, in a hat"]
    assert len(job.grids) == 1 and result.infotexts[0] == result.infotexts[1]


# --- Prompts from file or textbox ---------------------------------------------------------------------------------


def test_line_options_as_a1111() -> None:
    assert parse_line("a photo of a cat") == {"prompt": "a photo of a cat"}
    assert parse_line("a photo -- of a cat") == {"prompt": "a photo -- of a cat"}  # not an option line
    assert parse_line('--prompt a red cat --negative_prompt "blurry, ugly" --steps 3 --cfg_scale 6.5 '
                      '--sampler_name "Euler a" --seed 7 --width 64 --height 64 --styles "s1,s2" '
                      '--sd_model tiny --do_not_save_samples true --restore_faces false') == {
        "prompt": "a red cat", "negative_prompt": "blurry, ugly", "steps": 3, "cfg_scale": 6.5,
        "sampler_name": "Euler a", "seed": 7, "width": 64, "height": 64, "styles": ["s1", "s2"],
        "checkpoint": "tiny", "save_images": False}
    with pytest.raises(InvalidRequestError, match="line 2: unknown option --colour"):
        parse_lines("cat\n--prompt dog --colour red\n")
    with pytest.raises(InvalidRequestError, match="--steps: 'many' is not an integer"):
        parse_line("--prompt dog --steps many")
    with pytest.raises(InvalidRequestError, match="--steps has no value"):
        parse_line("--prompt dog --steps")
    with pytest.raises(InvalidRequestError, match="--restore_faces true is not supported"):
        parse_line("--restore_faces true")
    with pytest.raises(InvalidRequestError, match="--sampler_index is not supported.*--sampler_name"):
        parse_line("--sampler_index 2")


def test_line_requests_seeds_and_prompt_position() -> None:
    request = Txt2ImgRequest(prompt="masterpiece", seed=-1, batch_size=2, n_iter=1, width=64, height=64)
    text = "a cat\n\n--prompt a dog --seed 5\n--negative_prompt blur\n"
    plain = plan_lines(request, PromptLinesArgs(prompt_txt=text))
    assert [r.prompt for r in plain] == ["a cat masterpiece", "a dog masterpiece", "masterpiece"]
    assert [r.seed for r in plain] == [-1, 5, -1] and plain[2].negative_prompt == "blur"
    end = plan_lines(request, PromptLinesArgs(prompt_txt=text, prompt_position="end"))
    assert end[0].prompt == "masterpiece a cat"
    iterated = plan_lines(request, PromptLinesArgs(prompt_txt=text, checkbox_iterate=True), rng=random.Random(3))
    first = iterated[0].seed
    assert first != -1 and [r.seed for r in iterated] == [first, 5, first + 4]  # + batch_size * n_iter per line
    same = plan_lines(request, PromptLinesArgs(prompt_txt=text, checkbox_iterate_batch=True))
    assert same[0].seed == same[2].seed != -1
    with pytest.raises(InvalidRequestError, match="line 1.*steps"):
        plan_lines(request, PromptLinesArgs(prompt_txt="--prompt x --steps 999"))
    with pytest.raises(InvalidRequestError, match="(?i)line 1.*sampler"):
        plan_lines(request, PromptLinesArgs(prompt_txt="--prompt x --sampler_name Nope"))
    with pytest.raises(InvalidRequestError, match="empty"):
        plan_lines(request, PromptLinesArgs(prompt_txt="\n  \n"))


def test_positional_args_of_a1111_old_and_new() -> None:
    from modules.scripts.prompt_lines import args_from_positional

    assert args_from_positional([True, False, "end", "a\nb"]) == {
        "checkbox_iterate": True, "checkbox_iterate_batch": False, "prompt_position": "end", "prompt_txt": "a\nb"}
    assert args_from_positional([False, True, "a\nb"]) == {  # before v1.8: no prompt_position
        "checkbox_iterate": False, "checkbox_iterate_batch": True, "prompt_txt": "a\nb"}
    assert PromptLinesArgs(**args_from_positional([True])).checkbox_iterate


def test_lines_stop_when_interrupted() -> None:
    request = Txt2ImgRequest(prompt="", seed=1, width=64, height=64)
    job = FakeJob(request, before=lambda n, req: job.control.interrupt_event.set() if n == 1 else None)
    result = run_lines(job, PromptLinesArgs(prompt_txt="a\nb\nc\nd"))
    assert len(job.processed) == 2 and result.interrupted and result.prompts == ["a", "b"]


# --- on a tiny SD1 model ------------------------------------------------------------------------------------------


def _submit(ctx, request):
    from modules.jobs.model import JobState
    from modules.jobs.submit import submit_job

    job = submit_job(ctx, request, owner="t", source="test")
    ctx.queue.wait(job.id, 300)
    assert job.state is JobState.SUCCEEDED, job.error
    return job.result


def test_prompt_scripts_on_a_tiny_model(studio_factory) -> None:
    srv = studio_factory(("--nowebui",))
    ctx = srv.ctx
    base = dict(steps=2, width=64, height=64, seed=21, sampler_name="Euler")
    matrix = _submit(ctx, Txt2ImgRequest(prompt="a circle|red|blue", **base,
                                         script={"name": "Prompt matrix", "args": {}}))
    across, down = prompt_matrix_annotations(["red", "blue"])
    assert len(matrix.images) == 5 and matrix.images[0].size == layout_annotations(64, 64, across, down).size
    assert matrix.paths[0] is not None and "grids" in str(matrix.paths[0])
    assert matrix.prompts[1:] == ["a circle", "a circle, red", "a circle, blue", "a circle, red, blue"]
    alone = _submit(ctx, Txt2ImgRequest(prompt="a circle, blue", **base))
    assert matrix.images[3].tobytes() == alone.images[0].tobytes()

    lines = _submit(ctx, Txt2ImgRequest(prompt="", **base, script={
        "name": "prompts from file or textbox",
        "args": {"prompt_txt": "a circle, blue\n--prompt a square --steps 3 --cfg_scale 5"}}))
    assert len(lines.images) == 2 and lines.prompts == ["a circle, blue", "a square"]
    assert lines.images[0].tobytes() == alone.images[0].tobytes()
    assert "Steps: 3" in lines.infotexts[1] and "CFG scale: 5.0" in lines.infotexts[1]
    from modules.jobs.submit import submit_job

    with pytest.raises(InvalidRequestError, match="unknown option --colour"):
        submit_job(ctx, Txt2ImgRequest(prompt="", **base, script={
            "name": "Prompts from file or textbox", "args": {"prompt_txt": "--prompt x --colour red"}}),
                   owner="t", source="test")
