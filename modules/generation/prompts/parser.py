"""A1111 prompt syntax, parsed with the exact semantics of AUTOMATIC1111's ``modules/prompt_parser.py``
and ``modules/extra_networks.py`` (v1.10). Pure text processing: no torch.

Runner-facing API (the order A1111's ``processing.py`` applies them in):

1. styles are merged first (:mod:`modules.generation.prompts.styles`);
2. ``clean, calls = extract_extra_networks(prompt)`` removes ``<lora:name:0.8>``-style tags (A1111 takes the
   extra-network data of the *first* prompt of a batch); the LoRA numbers come from :func:`lora_params`;
3. ``get_multicond_prompt_list(prompts)`` / :func:`split_and` split composable ``a AND b:1.2`` prompts.
   Atelier's runner uses only the first sub-prompt of each prompt for now (no composable diffusion yet);
4. ``get_learned_conditioning_prompt_schedules(prompts, steps)`` resolves prompt editing ``[from:to:when]`` and
   alternation ``[a|b]`` into ``[(end_at_step, text), ...]`` per prompt;
5. each scheduled text is encoded by :mod:`modules.generation.prompts.conditioning`, which calls
   :func:`parse_prompt_attention` for ``(word:1.2)`` emphasis and ``BREAK``.

FLUX (T5) has no per-token weights: its prompts go through :func:`strip_attention`, which keeps the text
and drops the emphasis brackets and weights (``(word:1.2)`` becomes ``word``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import lark

#: A ``BREAK`` keyword outside brackets becomes this segment (A1111 uses weight -1 as the marker).
BREAK_SEGMENT = ("BREAK", -1.0)

ROUND_BRACKET_MULTIPLIER = 1.1
SQUARE_BRACKET_MULTIPLIER = 1 / 1.1

RE_ATTENTION = re.compile(
    r"""
\\\(|
\\\)|
\\\[|
\\]|
\\\\|
\\|
\(|
\[|
:\s*([+-]?[.\d]+)\s*\)|
\)|
]|
[^\\()\[\]:]+|
:
""",
    re.X,
)
_RE_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.S)

_SCHEDULE_GRAMMAR = r"""
!start: (prompt | /[][():]/+)*
prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
!emphasized: "(" prompt ")"
        | "(" prompt ":" prompt ")"
        | "[" prompt "]"
scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternate: "[" prompt ("|" [prompt])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""
#: A1111's Earley grammar for prompt editing and alternation (built once; parsing does not mutate it).
_SCHEDULE_PARSER = lark.Lark(_SCHEDULE_GRAMMAR)

_RE_AND = re.compile(r"\bAND\b")
_RE_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")
_RE_EXTRA_NET = re.compile(r"<(\w+):([^>]+)>")

#: Extra-network kinds handled as LoRA (A1111's Lora extension registers both names).
LORA_KINDS = ("lora", "lyco")


class PromptSyntaxError(ValueError):
    """A prompt that cannot be used as written (the message is shown to the user)."""


# --------------------------------------------------------------------------- emphasis


def parse_prompt_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(segment, weight)`` pairs exactly like A1111.

    ``(a)`` x1.1, ``[a]`` /1.1, ``(a:1.3)`` x1.3, escapes ``\\( \\) \\[ \\] \\\\``; unclosed brackets apply
    to the end of the text; a ``BREAK`` keyword becomes ``("BREAK", -1.0)``; neighbours of equal
    weight are merged; an empty text gives ``[("", 1.0)]``.
    """
    res: list[list] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= multiplier

    for match in RE_ATTENTION.finditer(text):
        piece = match.group(0)
        weight = match.group(1)
        if piece.startswith("\\"):
            res.append([piece[1:], 1.0])
        elif piece == "(":
            round_brackets.append(len(res))
        elif piece == "[":
            square_brackets.append(len(res))
        elif weight is not None and round_brackets:
            multiply_range(round_brackets.pop(), float(weight))
        elif piece == ")" and round_brackets:
            multiply_range(round_brackets.pop(), ROUND_BRACKET_MULTIPLIER)
        elif piece == "]" and square_brackets:
            multiply_range(square_brackets.pop(), SQUARE_BRACKET_MULTIPLIER)
        else:
            for i, part in enumerate(_RE_BREAK.split(piece)):
                if i > 0:
                    res.append(list(BREAK_SEGMENT))
                res.append([part, 1.0])

    for pos in round_brackets:
        multiply_range(pos, ROUND_BRACKET_MULTIPLIER)
    for pos in square_brackets:
        multiply_range(pos, SQUARE_BRACKET_MULTIPLIER)

    if not res:
        res = [["", 1.0]]

    i = 0
    while i + 1 < len(res):
        if res[i][1] == res[i + 1][1]:
            res[i][0] += res[i + 1][0]
            res.pop(i + 1)
        else:
            i += 1
    return [(segment, float(weight)) for segment, weight in res]


def is_break(segment: tuple[str, float]) -> bool:
    """Whether a parsed segment is A1111's ``BREAK`` marker (a ``BREAK`` inside brackets is plain text)."""
    return segment[0] == BREAK_SEGMENT[0] and segment[1] == BREAK_SEGMENT[1]


def strip_attention(text: str) -> str:
    """The plain text of a prompt for encoders without token weights (FLUX/T5).

    Emphasis brackets and weights are dropped (``a (red:1.2) [cat]`` -> ``a red cat``), escapes are
    resolved and ``BREAK`` becomes a single space. Resolve prompt editing first (the scheduled texts
    still carry their emphasis syntax).
    """
    return "".join(" " if is_break(seg) else seg[0] for seg in parse_prompt_attention(text))


# --------------------------------------------------------------------------- prompt editing


class _CollectSteps(lark.Visitor):
    """Turns every ``scheduled`` NUMBER into its integer step and collects the steps that change the text."""

    def __init__(self, steps: int, int_offset: int, flt_offset: float, use_old_scheduling: bool) -> None:
        self.steps = steps
        self.int_offset = int_offset
        self.flt_offset = flt_offset
        self.use_old_scheduling = use_old_scheduling
        self.found: list[int] = [steps]

    def scheduled(self, tree: lark.Tree) -> None:
        s = tree.children[-2]
        v = float(s)
        if self.use_old_scheduling:
            v = v * self.steps if v < 1 else v
        elif "." in s:
            v = (v - self.flt_offset) * self.steps
        else:
            v = v - self.int_offset
        tree.children[-2] = min(self.steps, int(v))
        if tree.children[-2] >= 1:
            self.found.append(tree.children[-2])

    def alternate(self, tree: lark.Tree) -> None:
        self.found.extend(range(1, self.steps + 1))


def _flatten(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    else:
        for child in node:  # type: ignore[attr-defined]
            yield from _flatten(child)


class _AtStep(lark.Transformer):
    """Renders the prompt text in effect at one step (A1111's ``AtStep``)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def scheduled(self, args: list) -> Iterator[object]:
        before, after, _, when, _ = args
        yield (before or ()) if self.step <= when else after

    def alternate(self, args: list) -> Iterator[object]:
        options = ["" if not arg else arg for arg in args]
        yield options[(self.step - 1) % len(options)]

    def start(self, args: list) -> str:
        return "".join(_flatten(args))

    def plain(self, args: list) -> Iterator[str]:
        yield args[0].value

    def __default__(self, data: str, children: list, meta: object) -> Iterator[object]:
        yield from children


def get_learned_conditioning_prompt_schedules(
    prompts: Sequence[str], base_steps: int, hires_steps: int | None = None, use_old_scheduling: bool = False
) -> list[list[tuple[int, str]]]:
    """Per prompt, the list of ``(end_at_step, text)`` pairs of A1111 prompt editing.

    ``[from:to:when]``, ``[to:when]``, ``[from::when]``: ``when`` is a step (integer) or a fraction of the
    steps (written with a ``.``); ``[a|b|c]`` alternates every step. With ``hires_steps`` the schedule is
    for the hires pass (integers count on from ``base_steps``, fractions from 1.0) unless
    ``use_old_scheduling``. Unparseable prompts give a single entry with the prompt unchanged.
    A text is in effect for sampling step ``s`` (0-based) when ``s <= end_at_step`` of its entry and of no
    earlier entry (see :func:`schedule_index_at`).
    """
    if hires_steps is None or use_old_scheduling:
        int_offset, flt_offset, steps = 0, 0.0, base_steps
    else:
        int_offset, flt_offset, steps = base_steps, 1.0, hires_steps

    def get_schedule(prompt: str) -> list[tuple[int, str]]:
        if "[" not in prompt:  # editing and alternation need brackets: skip the Earley parse
            return [(steps, prompt)]
        try:
            tree = _SCHEDULE_PARSER.parse(prompt)
        except lark.exceptions.LarkError:
            return [(steps, prompt)]
        collector = _CollectSteps(steps, int_offset, flt_offset, use_old_scheduling)
        collector.visit(tree)
        return [(t, _AtStep(t).transform(tree)) for t in sorted(set(collector.found))]

    cache = {prompt: get_schedule(prompt) for prompt in set(prompts)}
    return [list(cache[prompt]) for prompt in prompts]


def schedule_index_at(schedule: Sequence[tuple[int, str]], current_step: int) -> int:
    """Index of the schedule entry in effect at 0-based sampling step ``current_step`` (A1111's
    ``reconstruct_cond_batch``: the first entry with ``current_step <= end_at_step``, else the first)."""
    for index, (end_at_step, _) in enumerate(schedule):
        if current_step <= end_at_step:
            return index
    return 0


# --------------------------------------------------------------------------- composable diffusion (AND)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """The ``AND`` sub-prompts of one prompt with their weights (``a AND b:1.2`` -> ``[("a", 1.0), (" b", 1.2)]``)."""
    parts: list[tuple[str, float]] = []
    for subprompt in _RE_AND.split(prompt):
        match = _RE_WEIGHT.search(subprompt)
        text, weight = match.groups() if match is not None else (subprompt, None)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


def get_multicond_prompt_list(
    prompts: Sequence[str],
) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """A1111's ``get_multicond_prompt_list``: per prompt ``[(index into flat list, weight)]``, the flat list of
    distinct sub-prompts, and the sub-prompt -> index map."""
    res_indexes: list[list[tuple[int, float]]] = []
    flat: list[str] = []
    indexes: dict[str, int] = {}
    for prompt in prompts:
        entry: list[tuple[int, float]] = []
        for text, weight in split_and(prompt):
            index = indexes.get(text)
            if index is None:
                index = len(flat)
                flat.append(text)
                indexes[text] = index
            entry.append((index, weight))
        res_indexes.append(entry)
    return res_indexes, flat, indexes


# --------------------------------------------------------------------------- extra networks


@dataclass(frozen=True)
class ExtraNetworkCall:
    """One ``<kind:arg:arg...>`` tag: ``items`` split on ``:``; ``key=value`` items are ``named``."""

    kind: str
    items: tuple[str, ...]
    positional: tuple[str, ...] = field(default=())
    named: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def from_items(cls, kind: str, items: Sequence[str]) -> "ExtraNetworkCall":
        """Sort items into positional and named args as A1111's ``ExtraNetworkParams`` does."""
        positional: list[str] = []
        named: dict[str, str] = {}
        for item in items:
            parts = item.split("=", 2)
            if len(parts) == 2:
                named[parts[0]] = parts[1]
            else:
                positional.append(item)
        return cls(kind=kind, items=tuple(items), positional=tuple(positional), named=named)

    @property
    def tag(self) -> str:
        """The tag as written (for messages)."""
        return f"<{self.kind}:{':'.join(self.items)}>"


@dataclass(frozen=True)
class LoraParams:
    """The numbers of a ``<lora:name:te[:unet[:dyn]]>`` tag (named: ``te=``, ``unet=``, ``dyn=``)."""

    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    dyn_dim: int | None = None


def extract_extra_networks(prompt: str) -> tuple[str, list[ExtraNetworkCall]]:
    """Remove every ``<kind:args>`` tag from ``prompt``; returns the cleaned prompt and the tags in order."""
    calls: list[ExtraNetworkCall] = []

    def found(match: re.Match[str]) -> str:
        calls.append(ExtraNetworkCall.from_items(match.group(1), match.group(2).split(":")))
        return ""

    return _RE_EXTRA_NET.sub(found, prompt), calls


def _number(call: ExtraNetworkCall, value: str, kind: type[float] | type[int]) -> float | int:
    try:
        return kind(value)
    except ValueError:
        raise PromptSyntaxError(f"invalid number '{value}' in {call.tag}") from None


def lora_params(call: ExtraNetworkCall) -> LoraParams:
    """LoRA numbers with A1111's defaults: te 1.0, unet = te, no dyn dim."""
    if not call.positional:
        raise PromptSyntaxError(f"{call.tag} has no LoRA name; write <{call.kind}:name:weight>")
    pos, named = call.positional, call.named
    te = _number(call, pos[1], float) if len(pos) > 1 else 1.0
    te = _number(call, named["te"], float) if "te" in named else te
    unet = _number(call, pos[2], float) if len(pos) > 2 else te
    unet = _number(call, named["unet"], float) if "unet" in named else unet
    dyn = _number(call, pos[3], int) if len(pos) > 3 else None
    dyn = _number(call, named["dyn"], int) if "dyn" in named else dyn
    return LoraParams(name=pos[0], te_multiplier=float(te), unet_multiplier=float(unet),
                      dyn_dim=None if dyn is None else int(dyn))
