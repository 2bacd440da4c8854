"""Local vision-language models: any ``AutoModelForImageTextToText`` checkpoint in a folder under
``models/VLM/`` (ERNIE 4.5 VL's ``Ernie4_5_VLMoeForConditionalGeneration``, Qwen2.5-VL, SmolVLM/Idefics3, ...),
loaded offline with its ``AutoProcessor`` and run through the model's own chat template.

The loaded model is held in the studio's ``vlm`` model slot when given the slots, so it counts against the
one model-memory budget: loading a VLM may evict the checkpoint (``evicted`` says which slots went, and the
task says so). Generation streams through a ``transformers`` streamer into the ``on_text`` callback.
Models that need their own code (``trust_remote_code``) are refused: Atelier runs no downloaded code.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from modules.understanding.backends.base import (Answer, BackendError, BackendUnavailable, Message, StreamCallback,
                                                 Usage)

if TYPE_CHECKING:
    from PIL import Image

    from modules.models.slots import ModelSlots

VLM_SLOT = "vlm"


def is_vlm_folder(folder: Path) -> bool:
    """A folder that looks like a saved transformers model with a processor."""
    return (folder / "config.json").is_file() and any(
        (folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json",
                                               "tokenizer.json", "tokenizer_config.json"))


def list_vlm_folders(roots: Sequence[Path]) -> list[Path]:
    """Model folders directly under each root (first root wins on a name clash), sorted by name."""
    found: dict[str, Path] = {}
    for root in roots:
        if root.is_dir():
            for child in sorted(root.iterdir()):
                if child.is_dir() and is_vlm_folder(child) and child.name not in found:
                    found[child.name] = child
    return [found[name] for name in sorted(found)]


def hf_messages(messages: Sequence[Message], response_format: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The conversation as a chat template expects it: content parts, images first in their turn."""
    out: list[dict[str, Any]] = []
    for message in messages:
        parts: list[dict[str, Any]] = [{"type": "image"} for _ in message.images]
        parts.append({"type": "text", "text": message.text})
        out.append({"role": message.role, "content": parts})
    instruction = format_instruction(response_format)
    if instruction:
        for message in reversed(out):
            if message["role"] == "user":
                message["content"][-1]["text"] += "\n\n" + instruction
                break
    return out


def format_instruction(response_format: Mapping[str, Any] | None) -> str:
    """For backends without constrained decoding: ``response_format`` as an instruction (the answer is
    validated by the task anyway)."""
    if not response_format or response_format.get("type") == "text":
        return ""
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return "Answer with one JSON object only, valid against this JSON Schema: " + json.dumps(schema)
    return "Answer with one JSON object only."


class LocalVLMBackend:
    """:class:`~.base.VisionBackend` over a model folder."""

    def __init__(self, folder: Path, *, device: str = "cpu", slots: "ModelSlots | None" = None) -> None:
        self._folder = Path(folder)
        self._device = device
        self._slots = slots
        self._lock = threading.Lock()
        self._own: tuple[Path, Any, Any] | None = None
        self.evicted: list[str] = []

    @property
    def name(self) -> str:
        return f"local:{self._folder.name}"

    @property
    def folder(self) -> Path:
        return self._folder

    def loaded(self) -> tuple[Any, Any]:
        """(model, processor), loading them the first time (or again after an eviction)."""
        held = self._slots.slot(VLM_SLOT) if self._slots is not None else self._own
        if held is not None and held[0] == self._folder:
            return held[1], held[2]
        model, processor = self._load()
        entry = (self._folder, model, processor)
        if self._slots is not None:
            self.evicted = self._slots.put(VLM_SLOT, entry)
        else:
            self._own = entry
        return model, processor

    def _load(self) -> tuple[Any, Any]:
        if not self._folder.is_dir() or not (self._folder / "config.json").is_file():
            raise BackendUnavailable(f"no vision-language model in models/VLM/{self._folder.name} "
                                     f"(a folder with config.json and the processor files)")
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:  # pragma: no cover - transformers is a requirement
            raise BackendUnavailable("the transformers library is not installed") from None
        try:
            processor = AutoProcessor.from_pretrained(self._folder, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(self._folder, local_files_only=True)
        except (ValueError, KeyError, OSError) as exc:
            text = str(exc)
            if "trust_remote_code" in text or "custom code" in text:
                raise BackendError(f"models/VLM/{self._folder.name} needs its own Python code (trust_remote_code), "
                                   f"which Atelier does not run; use a checkpoint converted for transformers") from None
            raise BackendError(f"models/VLM/{self._folder.name} could not be loaded as an image-text-to-text model: "
                               f"{text.splitlines()[0][:300] if text else type(exc).__name__}") from None
        if getattr(processor, "chat_template", None) is None:
            raise BackendError(f"models/VLM/{self._folder.name} has no chat template (chat_template.jinja or "
                               f"in processor_config.json)")
        return model.to(self._device).eval(), processor

    def chat(self, messages: Sequence[Message], images: Sequence["Image.Image"] = (), *, max_tokens: int = 256,
             temperature: float = 0.0, response_format: Mapping[str, Any] | None = None,
             on_text: StreamCallback | None = None) -> Answer:
        import torch

        ordered = []
        for message in messages:
            for index in message.images:
                if not 0 <= index < len(images):
                    raise BackendError(f"message refers to image {index + 1}, but the conversation has {len(images)}")
                ordered.append(images[index].convert("RGB"))
        with self._lock:
            model, processor = self.loaded()
            prompt = processor.apply_chat_template(hf_messages(messages, response_format), add_generation_prompt=True,
                                                   tokenize=False)
            inputs = processor(text=[prompt], images=ordered or None, return_tensors="pt").to(model.device)
            prompt_len = int(inputs["input_ids"].shape[1])
            options: dict[str, Any] = {"max_new_tokens": int(max_tokens), "do_sample": temperature > 0}
            if temperature > 0:
                options["temperature"] = float(temperature)
            tokenizer = getattr(processor, "tokenizer", processor)
            if on_text is not None:
                options["streamer"] = _streamer(tokenizer, on_text)
            with torch.inference_mode():
                output = model.generate(**inputs, **options)
        new = output[0, prompt_len:]
        text = tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if int(new.shape[0]) >= int(max_tokens) else "stop"
        return Answer(text=text.strip(), usage=Usage(prompt_len, int(new.shape[0])), model=self.name,
                      finish_reason=finish)


def _streamer(tokenizer: Any, on_text: StreamCallback) -> Any:
    """A transformers streamer handing each finished piece of text to ``on_text`` (in the generating thread)."""
    from transformers import TextStreamer

    class CallbackStreamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                on_text(text)

    return CallbackStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
