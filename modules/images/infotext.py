"""A1111 infotext ("parameters"): build it, parse it back, map it onto request fields.

Format (``processing.create_infotext``)::

    <prompt, may span lines>
    Negative prompt: <negative prompt>        (only when non-empty)
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 512x768, ...

Value formatting rule: a value is written as Python ``str()`` of what the caller holds, so the
request layer must hold ints where A1111 holds ints (``Steps: 20``) and floats where it holds
floats (the API's ``cfg_scale`` is a float, giving ``CFG scale: 7.0``, as A1111's API does).

Parsing mirrors ``infotext_utils.parse_generation_parameters`` with no styles database (the
``infotext_styles`` step finds nothing) and A1111's default options.
"""

from __future__ import annotations

import json
import math
import re
from types import MappingProxyType
from typing import Any, Callable, Final, Mapping

from packaging import version

from modules.generation.prompts.parser import RE_ATTENTION
from modules.generation.sampling.samplers import SamplerError, find_schedule, resolve_sampler

#: A1111's fixed key order (the dict literal in ``create_infotext``).
KNOWN_KEY_ORDER: Final[tuple[str, ...]] = (
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration",
    "Size", "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE",
    "Variation seed", "Variation seed strength", "Seed resize from", "Denoising strength",
    "Conditional mask weight", "Clip skip", "ENSD", "Token merging ratio", "Token merging ratio hr",
    "Init image hash", "RNG", "Tiling",
)
TRAILING_KEYS: Final[tuple[str, ...]] = ("Version", "User")

re_param_code: Final[str] = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param: Final[re.Pattern[str]] = re.compile(re_param_code)
re_imagesize: Final[re.Pattern[str]] = re.compile(r"^(\d+)x(\d+)$")

#: Defaults ``parse_generation_parameters`` fills for missing keys, in A1111 v1.10.1 order.
#: ``restore_old_hires_fix_params`` runs between the two groups.
PARSE_DEFAULTS_BEFORE_HIRES_FIX: Final[tuple[tuple[str, Any], ...]] = (
    ("Hires sampler", "Use same sampler"),
    ("Hires schedule type", "Use same scheduler"),
    ("Hires checkpoint", "Use same checkpoint"),
    ("Hires prompt", ""),
    ("Hires negative prompt", ""),
    ("Mask mode", "Inpaint masked"),
    ("Masked content", "original"),
    ("Inpaint area", "Whole picture"),
    ("Masked area padding", 32),
)
PARSE_DEFAULTS_AFTER_HIRES_FIX: Final[tuple[tuple[str, Any], ...]] = (
    ("RNG", "GPU"),
    ("Schedule type", "Automatic"),
    ("Schedule max sigma", 0),
    ("Schedule min sigma", 0),
    ("Schedule rho", 0),
    ("VAE Encoder", "Full"),
    ("VAE Decoder", "Full"),
    ("FP8 weight", "Disable"),
)
#: Every default value the parser may fill in, by key.
PARSE_DEFAULTS: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "Clip skip": "1",
        "Hires resize-1": 0,
        "Hires resize-2": 0,
        **dict(PARSE_DEFAULTS_BEFORE_HIRES_FIX),
        **dict(PARSE_DEFAULTS_AFTER_HIRES_FIX),
        "Refiner switch by sampling steps": False,
    }
)

_V160: Final = version.parse("1.6.0")
_V170_TSNR: Final = version.parse("v1.7.0-225")
_V180: Final = version.parse("1.8.0")

_re_attention: Final[re.Pattern[str]] = RE_ATTENTION  # A1111's attention syntax, shared with the prompt parser


class InfotextError(ValueError):
    """Infotext that cannot be used (e.g. not a string)."""


def quote(text: Any) -> Any:
    """A1111 ``quote``: JSON-encode a value containing ``,``, ``:`` or a newline."""
    as_text = str(text)
    if "," not in as_text and "\n" not in as_text and ":" not in as_text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A1111 ``unquote``: decode a JSON string literal, or return the text unchanged."""
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001 - A1111 returns the raw text on any decode failure
        return text


def order_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Known keys in A1111 order, then the rest in insertion order, then Version and User."""
    ordered = {key: params[key] for key in KNOWN_KEY_ORDER if key in params}
    ordered.update({k: v for k, v in params.items() if k not in ordered and k not in TRAILING_KEYS})
    ordered.update({key: params[key] for key in TRAILING_KEYS if key in params})
    return ordered


def build_params_line(params: Mapping[str, Any]) -> str:
    """The last infotext line: ``k: quote(v)`` joined by ", "; None skipped; ``k == v`` bare."""
    return ", ".join(
        k if k == v else f"{k}: {quote(v)}" for k, v in order_params(params).items() if v is not None
    )


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """A1111 ``create_infotext`` output for a prompt, negative prompt and parameters."""
    negative_prompt_text = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative_prompt_text}\n{build_params_line(params)}".strip()


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    prompt = ""
    negative_prompt = ""
    done_with_prompt = False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    return prompt, negative_prompt


def _old_hires_fix_first_pass_dimensions(width: int, height: int) -> tuple[int, int]:
    """A1111 ``processing.old_hires_fix_first_pass_dimensions``."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _restore_old_hires_fix_params(res: dict[str, Any]) -> None:
    """A1111 ``restore_old_hires_fix_params`` (``use_old_hires_fix_width_height`` off)."""
    firstpass_width = res.get("First pass size-1")
    firstpass_height = res.get("First pass size-2")
    if firstpass_width is None or firstpass_height is None:
        return
    try:
        fp_width, fp_height = int(firstpass_width), int(firstpass_height)
        width = int(res.get("Size-1", 512))
        height = int(res.get("Size-2", 512))
    except ValueError:
        return
    if (fp_width == 0 or fp_height == 0) and width > 0 and height > 0:
        fp_width, fp_height = _old_hires_fix_first_pass_dimensions(width, height)
    res["Size-1"] = fp_width
    res["Size-2"] = fp_height
    res["Hires resize-1"] = width
    res["Hires resize-2"] = height


def uses_emphasis(text: str) -> bool:
    """Whether a prompt has attention weights other than 1.0 (A1111 ``parse_prompt_attention``)."""
    weights: list[float] = []
    round_brackets: list[int] = []
    square_brackets: list[int] = []

    def multiply_range(start: int, multiplier: float) -> None:
        for pos in range(start, len(weights)):
            weights[pos] *= multiplier

    for match in _re_attention.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            weights.append(1.0)
        elif token == "(":
            round_brackets.append(len(weights))
        elif token == "[":
            square_brackets.append(len(weights))
        elif weight is not None and round_brackets:
            try:
                multiply_range(round_brackets.pop(), float(weight))
            except ValueError:
                return True
        elif token == ")" and round_brackets:
            multiply_range(round_brackets.pop(), 1.1)
        elif token == "]" and square_brackets:
            multiply_range(square_brackets.pop(), 1 / 1.1)
        else:
            # BREAK keywords carry weight -1 in A1111 and never count as emphasis.
            parts = re.split(r"\s*\bBREAK\b\s*", token, flags=re.S)
            weights.extend(1.0 for _ in parts)
    for pos in round_brackets:
        multiply_range(pos, 1.1)
    for pos in square_brackets:
        multiply_range(pos, 1 / 1.1)
    return any(w != 1.0 for w in weights)


def _parse_version(text: str | None) -> version.Version | None:
    """A1111 ``infotext_versions.parse_version``."""
    if text is None:
        return None
    match = re.match(r"([^-]+-[^-]+)-.*", text)
    if match:
        text = match.group(1)
    try:
        return version.parse(text)
    except version.InvalidVersion:
        return None


def _backcompat(res: dict[str, Any]) -> None:
    """A1111 ``infotext_versions.backcompat`` (``auto_backcompat`` on)."""
    ver = _parse_version(res.get("Version"))
    if ver is None:
        return
    if ver < _V160 and "[" in res.get("Prompt", ""):
        res["Old prompt editing timelines"] = True
    if ver < _V160 and res.get("Sampler", "") in ("DDIM", "PLMS"):
        res["Pad conds v0"] = True
    if ver < _V170_TSNR:
        res["Downcast alphas_cumprod"] = True
    if ver < _V180 and res.get("Refiner"):
        res["Refiner switch by sampling steps"] = True


def parse_infotext(text: str) -> dict[str, Any]:
    """A1111 ``parse_generation_parameters``: values stay strings; A1111's defaults are filled."""
    if not isinstance(text, str):
        raise InfotextError(f"Infotext must be a string, got {type(text).__name__}")
    res: dict[str, Any] = {}
    *lines, lastline = text.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""

    prompt, negative_prompt = _split_prompts(lines)

    for key, value in re_param.findall(lastline):
        if not value:
            continue  # A1111 fails on v[0] for an empty value and skips the key
        if value[0] == '"' and value[-1] == '"':
            value = unquote(value)
        match = re_imagesize.match(value) if isinstance(value, str) else None
        if match is not None:
            res[f"{key}-1"] = match.group(1)
            res[f"{key}-2"] = match.group(2)
        else:
            res[key] = value

    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt

    if "Clip skip" not in res:
        res["Clip skip"] = "1"
    hypernet = res.get("Hypernet")
    if hypernet is not None:
        res["Prompt"] += f"<hypernet:{hypernet}:{res.get('Hypernet strength', '1.0')}>"
    if "Hires resize-1" not in res:
        res["Hires resize-1"] = 0
        res["Hires resize-2"] = 0
    for key, default in PARSE_DEFAULTS_BEFORE_HIRES_FIX:
        res.setdefault(key, default)
    _restore_old_hires_fix_params(res)
    for key, default in PARSE_DEFAULTS_AFTER_HIRES_FIX:
        res.setdefault(key, default)
    if "Cache FP16 weight for LoRA" not in res and res["FP8 weight"] != "Disable":
        res["Cache FP16 weight for LoRA"] = False
    if "Emphasis" not in res and (uses_emphasis(prompt) or uses_emphasis(negative_prompt)):
        res["Emphasis"] = "Original"
    res.setdefault("Refiner switch by sampling steps", False)
    _backcompat(res)
    return res


def _as_int(value: Any) -> int:
    return int(str(value).strip())


def _as_float(value: Any) -> float:
    return float(str(value).strip())


def _as_str(value: Any) -> str:
    return str(value)


def _rng_source(value: Any) -> str | None:
    """A1111's ``RNG`` (GPU when the key is absent: its default); None for a source it does not name."""
    text = str(value).strip().upper()
    return text if text in ("GPU", "CPU", "NV") else None


def _unless_same(sentinel: str) -> Callable[[Any], str | None]:
    """Converter giving None for A1111's "Use same ..." placeholder values."""
    return lambda value: None if str(value) == sentinel else str(value)


#: Parsed infotext key -> (request field, converter). A converter returning None sets nothing.
_FIELD_MAP: Final[Mapping[str, tuple[str, Callable[[Any], Any]]]] = MappingProxyType(
    {
        "Prompt": ("prompt", _as_str),
        "Negative prompt": ("negative_prompt", _as_str),
        "Steps": ("steps", _as_int),
        "CFG scale": ("cfg_scale", _as_float),
        "Image CFG scale": ("image_cfg_scale", _as_float),
        "Seed": ("seed", _as_int),
        "Size-1": ("width", _as_int),
        "Size-2": ("height", _as_int),
        "Variation seed": ("subseed", _as_int),
        "Variation seed strength": ("subseed_strength", _as_float),
        "Seed resize from-1": ("seed_resize_from_w", _as_int),
        "Seed resize from-2": ("seed_resize_from_h", _as_int),
        "Denoising strength": ("denoising_strength", _as_float),
        "Clip skip": ("clip_skip", _as_int),
        "RNG": ("randn_source", _rng_source),
        "Model": ("checkpoint", _as_str),
        "Model hash": ("model_hash", _as_str),
        "Hires upscale": ("hr_scale", _as_float),
        "Hires upscaler": ("hr_upscaler", _as_str),
        "Hires steps": ("hr_second_pass_steps", _as_int),
        "Hires resize-1": ("hr_resize_x", _as_int),
        "Hires resize-2": ("hr_resize_y", _as_int),
        "Hires sampler": ("hr_sampler_name", _unless_same("Use same sampler")),
        "Hires schedule type": ("hr_scheduler", _unless_same("Use same scheduler")),
        "Hires checkpoint": ("hr_checkpoint_name", _unless_same("Use same checkpoint")),
        "Hires prompt": ("hr_prompt", _as_str),
        "Hires negative prompt": ("hr_negative_prompt", _as_str),
    }
)

#: A1111 txt2img paste rule: hires is on when these accompany "Denoising strength".
_HIRES_MARKERS: Final[tuple[str, ...]] = ("Hires upscale", "Hires upscaler", "Hires resize-1")


def split_sampler_and_scheduler(sampler: str | None, schedule: str | None) -> tuple[str | None, str | None]:
    """A1111 ``get_sampler_and_scheduler`` for pasting: legacy names split, default -> "Automatic".

    Names Atelier cannot resolve (e.g. "DPM adaptive") are returned unchanged so that request
    validation reports them.
    """
    if sampler is None:
        return None, schedule
    try:
        resolved = resolve_sampler(str(sampler), None if schedule is None else str(schedule))
    except SamplerError:
        return str(sampler), None if schedule is None else str(schedule)
    if resolved.schedule in ("automatic", resolved.spec.default_schedule):
        return resolved.sampler_name, "Automatic"
    return resolved.sampler_name, find_schedule(resolved.schedule).label


def infotext_to_request_fields(params: Mapping[str, Any]) -> dict[str, Any]:
    """Map parsed infotext keys to typed request fields; the rest go to ``result["extra"]``.

    Values that fail to convert (e.g. ``Steps: abc``) are kept in ``extra``; parse defaults
    (e.g. ``Mask mode: Inpaint masked``) are not repeated there.
    """
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    sampler_name, scheduler = split_sampler_and_scheduler(params.get("Sampler"), params.get("Schedule type"))
    if sampler_name is not None:
        fields["sampler_name"] = sampler_name
    if scheduler is not None:
        fields["scheduler"] = scheduler

    for key, value in params.items():
        if key in ("Sampler", "Schedule type"):
            continue
        target = _FIELD_MAP.get(key)
        if target is None:
            if key not in PARSE_DEFAULTS or PARSE_DEFAULTS[key] != value:
                extra[key] = value
            continue
        name, convert = target
        try:
            converted = convert(value)
        except (TypeError, ValueError):
            extra[key] = value
            continue
        if converted is not None:
            fields[name] = converted

    fields["enable_hr"] = "Denoising strength" in params and any(k in params for k in _HIRES_MARKERS)
    fields["extra"] = extra
    return fields
