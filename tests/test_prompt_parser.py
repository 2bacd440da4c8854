"""A1111 prompt syntax: emphasis, prompt editing, AND, extra networks (A1111's doctests ported)."""

from __future__ import annotations

import pytest

from modules.generation.prompts.parser import (
    ExtraNetworkCall,
    PromptSyntaxError,
    extract_extra_networks,
    get_learned_conditioning_prompt_schedules,
    get_multicond_prompt_list,
    is_break,
    lora_params,
    parse_prompt_attention,
    schedule_index_at,
    split_and,
    strip_attention,
)

# --------------------------------------------------------------------------- parse_prompt_attention


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
    ],
)
def test_attention_a1111_doctests(text: str, expected: list[tuple[str, float]]) -> None:
    assert parse_prompt_attention(text) == expected


def test_attention_weights_and_nesting() -> None:
    assert parse_prompt_attention("((word))") == [("word", 1.1 * 1.1)]
    assert parse_prompt_attention("(word:1.3)") == [("word", 1.3)]
    assert parse_prompt_attention("(word: 1.3 )") == [("word", 1.3)]
    assert parse_prompt_attention("[word]") == [("word", 1 / 1.1)]
    assert parse_prompt_attention("[[word]]") == [("word", (1 / 1.1) * (1 / 1.1))]
    assert parse_prompt_attention("(a [b] c:2)") == [("a ", 2.0), ("b", 2.0 / 1.1), (" c", 2.0)]


def test_attention_escapes_and_stray_brackets() -> None:
    assert parse_prompt_attention("a \\\\ b") == [("a \\ b", 1.0)]
    assert parse_prompt_attention("\\(x\\) \\[y\\]") == [("(x) [y]", 1.0)]
    assert parse_prompt_attention("a) b]") == [("a) b]", 1.0)]  # closers without openers are text
    assert parse_prompt_attention("[unclosed") == [("unclosed", 1 / 1.1)]
    assert parse_prompt_attention("a:b") == [("a:b", 1.0)]
    assert parse_prompt_attention("") == [("", 1.0)]


def test_break_is_its_own_segment() -> None:
    assert parse_prompt_attention("a cat BREAK a dog") == [("a cat", 1.0), ("BREAK", -1.0), ("a dog", 1.0)]
    parsed = parse_prompt_attention("(a BREAK b)")  # inside brackets BREAK is weighted, so plain text
    assert parsed == [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]
    assert not any(is_break(s) for s in parsed)
    assert parse_prompt_attention("aBREAKb") == [("aBREAKb", 1.0)]


def test_strip_attention_for_t5() -> None:
    assert strip_attention("a (red:1.2) [cat], ((big))") == "a red cat, big"
    assert strip_attention("\\(literal\\) BREAK next") == "(literal) next"


# --------------------------------------------------------------------------- prompt editing


def _g(prompt: str, steps: int = 10, hires: int | None = None, old: bool = False) -> list[tuple[int, str]]:
    return get_learned_conditioning_prompt_schedules([prompt], steps, hires, old)[0]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [(10, "test")]),
        ("a [b:3]", [(3, "a "), (10, "a b")]),
        ("a [b: 3]", [(3, "a "), (10, "a b")]),
        ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
        ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
        ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
        ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
        ("a [unbalanced", [(10, "a [unbalanced")]),
        ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
        ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
        ("a [b:c:0.5] d", [(5, "a b d"), (10, "a c d")]),
        ("a [b::4] c", [(4, "a b c"), (10, "a  c")]),
    ],
)
def test_schedules_a1111_doctests(prompt: str, expected: list[tuple[int, str]]) -> None:
    assert _g(prompt) == expected


def test_unparseable_editing_is_left_as_text() -> None:
    # A1111's docstring lists [[5, 'a  c'], [10, 'a {b|d{ c']] "not handling this right now"; its grammar
    # (lark 1.1.2 as pinned by A1111, and 1.3) rejects the prompt, so the text is used unchanged.
    assert _g("a [{b|d{:.5] c") == [(10, "a [{b|d{:.5] c")]


def test_alternation_a1111_doctests() -> None:
    assert _g("[a|(b:1.1)]") == [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]
    assert _g("[fe|]male") == [(s, "female" if s % 2 else "male") for s in range(1, 11)]
    assert _g("[fe|||]male") == [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]


def test_hires_and_old_scheduling() -> None:
    assert _g("a [b:.5] c", 10, 10) == [(10, "a b c")]
    assert _g("a [b:1.5] c", 10, 10) == [(5, "a  c"), (10, "a b c")]
    assert _g("a [b:12] c", 10, 10) == [(2, "a  c"), (10, "a b c")]  # integer steps count on from base steps
    assert _g("a [b:1.5] c", 10, 10, old=True) == [(1, "a  c"), (10, "a b c")]
    assert _g("a [b:0.3] c", 10, None, old=True) == [(3, "a  c"), (10, "a b c")]
    assert _g("a [b:c:20]", 10) == [(10, "a b")]  # past the end: clamped, "to" never used


def test_schedules_keep_batch_order_and_share_results() -> None:
    prompts = ["x [a:b:2]", "plain", "x [a:b:2]"]
    schedules = get_learned_conditioning_prompt_schedules(prompts, 4)
    assert schedules == [[(2, "x a"), (4, "x b")], [(4, "plain")], [(2, "x a"), (4, "x b")]]


def test_schedule_index_at_follows_a1111_rule() -> None:
    schedule = [(5, "a b d"), (10, "a c d")]
    picks = [schedule_index_at(schedule, step) for step in range(10)]
    assert picks == [0] * 6 + [1] * 4  # step s uses the first entry with s <= end_at_step
    assert schedule_index_at(schedule, 11) == 0  # A1111 falls back to the first entry


# --------------------------------------------------------------------------- AND


def test_split_and_weights() -> None:
    assert split_and("a cat AND a dog:1.2") == [("a cat", 1.0), (" a dog", 1.2)]
    assert split_and("a AND b : -0.5") == [("a", 1.0), (" b", -0.5)]
    assert split_and("ANDROID robot") == [("ANDROID robot", 1.0)]
    assert split_and("time:3 AND x") == [("time", 3.0), (" x", 1.0)]


def test_multicond_prompt_list_dedupes_subprompts() -> None:
    res, flat, index = get_multicond_prompt_list(["a AND b:2", "b:2 AND c"])
    assert flat == ["a", " b", "b", " c"]
    assert res == [[(0, 1.0), (1, 2.0)], [(2, 2.0), (3, 1.0)]]
    assert index == {"a": 0, " b": 1, "b": 2, " c": 3}


# --------------------------------------------------------------------------- extra networks


def test_extract_extra_networks() -> None:
    clean, calls = extract_extra_networks("a <lora:foo:0.5> cat <hypernet:h:1> <lora:bar:te=0.8:unet=0.3:dyn=4>")
    assert clean == "a  cat  "
    assert [c.kind for c in calls] == ["lora", "hypernet", "lora"]
    assert calls[0] == ExtraNetworkCall("lora", ("foo", "0.5"), ("foo", "0.5"), {})
    assert calls[2].positional == ("bar",)
    assert calls[2].named == {"te": "0.8", "unet": "0.3", "dyn": "4"}
    assert extract_extra_networks("no tags <not a tag> <x:>") == ("no tags <not a tag> <x:>", [])


def test_lora_defaults_and_forms() -> None:
    def params(tag: str):
        return lora_params(extract_extra_networks(tag)[1][0])

    assert params("<lora:name>") == params("<lora:name:1>")
    p = params("<lora:name>")
    assert (p.name, p.te_multiplier, p.unet_multiplier, p.dyn_dim) == ("name", 1.0, 1.0, None)
    p = params("<lora:name:0.7>")
    assert (p.te_multiplier, p.unet_multiplier) == (0.7, 0.7)  # unet defaults to te
    p = params("<lora:name:0.7:0.2:8>")
    assert (p.te_multiplier, p.unet_multiplier, p.dyn_dim) == (0.7, 0.2, 8)
    p = params("<lora:name:0.7:unet=0.1:dyn=16>")
    assert (p.te_multiplier, p.unet_multiplier, p.dyn_dim) == (0.7, 0.1, 16)
    p = params("<lora:name:te=0.4>")
    assert (p.te_multiplier, p.unet_multiplier) == (0.4, 0.4)


def test_lora_errors_are_clear() -> None:
    with pytest.raises(PromptSyntaxError, match=r"invalid number 'abc' in <lora:name:abc>"):
        lora_params(extract_extra_networks("<lora:name:abc>")[1][0])
    with pytest.raises(PromptSyntaxError, match="has no LoRA name"):
        lora_params(extract_extra_networks("<lora:te=1>")[1][0])
