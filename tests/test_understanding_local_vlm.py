"""The local transformers VLM backend on tiny random-weight models of two real architectures (ERNIE 4.5 VL's
``ernie4_5_vl_moe`` and Qwen2.5-VL), built in the test and loaded offline from a models/VLM folder: chat
template, images (two in one conversation), generation, streaming, usage, and the model-slot budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from modules.models.slots import ModelSlots
from modules.understanding.backends.base import BackendError, BackendUnavailable, Message, single_turn
from modules.understanding.backends.local_vlm import VLM_SLOT, LocalVLMBackend, hf_messages, list_vlm_folders
from tests.helpers.tiny_vlms import build_tiny_vlm

pytestmark = pytest.mark.slow
ARCHS = ("ernie4_5_vl_moe", "qwen2_5_vl")


@pytest.fixture(scope="module")
def vlm_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models") / "VLM"
    for arch in ARCHS:
        build_tiny_vlm(arch, root / f"tiny-{arch}")
    return root


def images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (30, 50), (0, 0, 255))]


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_streaming_and_usage(vlm_root, arch):
    backend = LocalVLMBackend(vlm_root / f"tiny-{arch}")
    assert backend.name == f"local:tiny-{arch}"
    pieces: list[str] = []
    answer = backend.chat(single_turn("what is this shape ?"), images()[:1], max_tokens=6, on_text=pieces.append)
    assert answer.usage.completion_tokens >= 1 and answer.usage.prompt_tokens > 5
    # the streamed pieces are the answer (random weights: whatever words they are)
    assert "".join(pieces).strip() == answer.text
    again = backend.chat(single_turn("what is this shape ?"), images()[:1], max_tokens=6)
    assert again.text == answer.text  # greedy: the same answer without the streamer


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_template_and_two_images_in_context(vlm_root, arch):
    backend = LocalVLMBackend(vlm_root / f"tiny-{arch}")
    model, processor = backend.loaded()
    conversation = [Message("user", "what colour ?", (0,)), Message("assistant", "red"),
                    Message("user", "and this one ?", (1,))]
    prompt = processor.apply_chat_template(hf_messages(conversation, None), add_generation_prompt=True, tokenize=False)
    assert prompt.count("<|user|>") == 2 and prompt.endswith("<|assistant|>") and "red" in prompt
    inputs = processor(text=[prompt], images=images(), return_tensors="pt")
    assert inputs["image_grid_thw"].shape[0] == 2  # both images reach the model
    one = backend.chat(conversation[:1], images(), max_tokens=3)
    two = backend.chat(conversation, images(), max_tokens=3)
    assert two.usage.prompt_tokens > one.usage.prompt_tokens
    with pytest.raises(BackendError, match="image 3"):
        backend.chat([Message("user", "x", (2,))], images())


def test_held_in_the_vlm_slot(vlm_root):
    slots = ModelSlots(10 * 1024 ** 3)
    slots.put("checkpoint", torch.zeros(4))
    backend = LocalVLMBackend(vlm_root / "tiny-qwen2_5_vl", slots=slots)
    backend.chat(single_turn("hi", 0), max_tokens=2)
    assert slots.slot(VLM_SLOT)[0] == vlm_root / "tiny-qwen2_5_vl" and "checkpoint" in slots
    assert backend.evicted == []


def test_missing_and_listing(vlm_root, tmp_path):
    assert [p.name for p in list_vlm_folders([vlm_root, tmp_path])] == [f"tiny-{a}" for a in ARCHS]
    with pytest.raises(BackendUnavailable, match="models/VLM/nothing"):
        LocalVLMBackend(tmp_path / "nothing").chat(single_turn("x", 0))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "no_such_arch"}')
    with pytest.raises(BackendError, match="could not be loaded"):
        LocalVLMBackend(tmp_path / "broken").chat(single_turn("x", 0))


def test_loading_a_vlm_may_unload_the_checkpoint(vlm_root):
    size = 8 * 1024 * 1024
    slots = ModelSlots(size + 1024)  # room for the checkpoint alone
    slots.put("checkpoint", torch.zeros(size // 4))
    backend = LocalVLMBackend(vlm_root / "tiny-ernie4_5_vl_moe", slots=slots)
    backend.chat(single_turn("hi", 0), max_tokens=1)
    assert backend.evicted == ["checkpoint"] and "checkpoint" not in slots and VLM_SLOT in slots
