"""Prompt preparation shared by the runners: styles, extra-network tags, syntax checks.

Styles are baked into the prompt (and so into the infotext), as A1111 does; extra-network tags such as
``<lora:name:1>`` stay in the infotext but are removed before encoding and handed to the hooks that
declare their kind (anything else is refused with a clear message); composable ``AND`` keeps its
first sub-prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Collection, Sequence

from modules.generation.validation import InvalidRequestError

if TYPE_CHECKING:
    from modules.generation.prompts.parser import ExtraNetworkCall
    from modules.generation.prompts.styles import StyleStore


@dataclass(frozen=True)
class PreparedPrompts:
    prompt: str             # as written to the infotext (styles applied, tags kept)
    negative: str
    encode_prompt: str      # what the text encoders see
    encode_negative: str
    networks: list["ExtraNetworkCall"] = field(default_factory=list)


def prepare_prompt_pair(prompt: str, negative: str, style_names: Sequence[str], styles: "StyleStore | None",
                        steps: int, handled_kinds: Collection[str] = ()) -> PreparedPrompts:
    """Apply styles, strip extra-network tags and check the prompt syntax for ``steps``."""
    from modules.generation.prompts.parser import (PromptSyntaxError, extract_extra_networks,
                                                  get_learned_conditioning_prompt_schedules, split_and)
    from modules.generation.prompts.styles import StyleError

    try:
        if style_names:
            if styles is None:
                raise InvalidRequestError("styles were requested but no styles.csv is configured")
            prompt, negative = styles.apply_styles(prompt, negative, list(style_names))
        encode_prompt, networks = extract_extra_networks(prompt)
        encode_negative, _ = extract_extra_networks(negative)
        get_learned_conditioning_prompt_schedules([encode_prompt, encode_negative], steps)
    except (PromptSyntaxError, StyleError) as exc:
        raise InvalidRequestError(str(exc)) from None
    unhandled = [c for c in networks if c.kind.lower() not in {k.lower() for k in handled_kinds}]
    if unhandled:
        names = ", ".join(f"<{c.kind}:{c.items[0] if c.items else ''}>" for c in unhandled)
        supported = ", ".join(sorted(handled_kinds)) or "none"
        raise InvalidRequestError(f"unsupported extra network in the prompt: {names} (supported kinds: {supported})")
    encode_prompt = split_and(encode_prompt)[0][0] if encode_prompt.strip() else encode_prompt
    return PreparedPrompts(prompt, negative, encode_prompt, encode_negative, list(networks))
