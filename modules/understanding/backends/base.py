"""The one interface every understanding backend implements, and the types it speaks.

A backend answers a chat: ``chat(messages, images, max_tokens=, temperature=, response_format=, on_text=)``
returns an :class:`Answer` (the text and the token usage). ``messages`` are plain role/text pairs; the
images of the conversation are passed beside them, and each message says which of them it shows
(``Message.images``: indices into ``images``), so earlier images stay in context in a multi-turn chat.
``on_text`` (optional) receives the answer in pieces as it is generated (streaming).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from PIL import Image

Role = Literal["system", "user", "assistant"]
#: receives each new piece of the answer as it is generated
StreamCallback = Callable[[str], None]


@dataclass(frozen=True)
class Message:
    """One turn: who speaks, what is said, and which of the conversation's images it shows (by index)."""

    role: Role
    text: str
    images: tuple[int, ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts as the backend reports them (0 where it does not count)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.total_tokens}


@dataclass(frozen=True)
class Answer:
    text: str
    usage: Usage = field(default_factory=Usage)
    model: str = ""
    finish_reason: str = "stop"


class BackendError(RuntimeError):
    """A backend could not answer; the message is safe to show (no secrets, no traceback)."""


class BackendUnavailable(BackendError):
    """The backend is not there: a service offline or unreachable, a model folder missing."""


@runtime_checkable
class VisionBackend(Protocol):
    """What every backend offers."""

    @property
    def name(self) -> str: ...

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer: ...


def single_turn(prompt: str, image_count: int = 1, system: str | None = None) -> list[Message]:
    """A one-question conversation showing the first ``image_count`` images."""
    messages = [Message("system", system)] if system else []
    messages.append(Message("user", prompt, tuple(range(image_count))))
    return messages
