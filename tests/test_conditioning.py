"""A1111-style CLIP conditioning on tiny random SD 1.x / SDXL pipelines with the real CLIP tokenizer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from modules.generation.prompts.conditioning import (
    CHUNK_TOKENS,
    ChunkTokenizer,
    ConditioningError,
    PromptEncoder,
    ScheduledConditioning,
    encode_prompt_batch,
)
from modules.models.families import get_family
from modules.models.tokenizers import load_clip_tokenizer
from tests.fixtures.tiny_models import build_tiny_components, tiny_pipeline


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Any:
    """Tiny models run ~100x faster single-threaded on a shared, busy CPU; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sd1(model_cache_dir: Path) -> Any:
    pipe = tiny_pipeline("sd1", build_tiny_components("sd1", seed=1), model_cache_dir)
    with torch.no_grad():  # a real CLIP's output has a non-zero mean; a fresh LayerNorm's is ~0
        pipe.text_encoder.final_layer_norm.bias.add_(0.5)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)  # one UNet call per step
    return pipe


@pytest.fixture(scope="module")
def sdxl(model_cache_dir: Path) -> Any:
    pipe = tiny_pipeline("sdxl", build_tiny_components("sdxl", seed=2), model_cache_dir)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    return pipe


def _plain(pipe: Any, prompt: str, **kw: Any) -> torch.Tensor:
    """The stock diffusers SD encoding of a short prompt."""
    embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False, **kw)
    return embeds


def _encode(pipe: Any, prompt: str, negative: str = "", clip_skip: int = 1, arch: str = "sd1") -> dict:
    return encode_prompt_batch(pipe, arch, [prompt], [negative], clip_skip)


# --------------------------------------------------------------------------- chunking


def test_chunking_counts_and_break(sd1: Any) -> None:
    chunker = ChunkTokenizer(sd1.tokenizer)
    chunks, count = chunker.tokenize_line("a photo of a cat")
    assert count == 5 and len(chunks) == 1
    assert chunks[0].tokens == sd1.tokenizer("a photo of a cat", padding="max_length", max_length=77).input_ids
    chunks, _ = chunker.tokenize_line("a cat BREAK a dog")
    assert len(chunks) == 2
    assert chunks[1].tokens[:4] == [chunker.id_start] + sd1.tokenizer("a dog", add_special_tokens=False).input_ids + [
        chunker.id_end]
    chunks, count = chunker.tokenize_line(" ".join(["cat"] * 100))
    assert (len(chunks), count) == (2, 100)
    assert all(len(c.tokens) == CHUNK_TOKENS and len(c.multipliers) == CHUNK_TOKENS for c in chunks)


def test_weights_follow_tokens(sd1: Any) -> None:
    chunks, _ = ChunkTokenizer(sd1.tokenizer).tokenize_line("a (cat:1.5) [dog]")
    assert chunks[0].multipliers[:5] == [1.0, 1.0, 1.5, 1 / 1.1, 1.0]


def test_comma_backtrack_moves_words_after_a_late_comma(sd1: Any) -> None:
    prompt = " ".join(["cat"] * 70) + ", " + " ".join(["cat"] * 10)
    comma = sd1.tokenizer.get_vocab()[",</w>"]
    chunks, _ = ChunkTokenizer(sd1.tokenizer).tokenize_line(prompt)
    assert len(chunks) == 2
    body0 = chunks[0].tokens[1:-1]
    assert body0[70] == comma and body0[71:] == [chunks[0].tokens[-1]] * 4  # chunk ends at the comma
    assert chunks[1].tokens[1:11] == [chunks[1].tokens[1]] * 10  # all 10 words after the comma moved
    no_backtrack, _ = ChunkTokenizer(sd1.tokenizer, comma_padding_backtrack=0).tokenize_line(prompt)
    assert no_backtrack[0].tokens[1:-1][70] == comma and no_backtrack[0].tokens[75] != chunks[0].tokens[75]


# --------------------------------------------------------------------------- SD 1.x encoding


def test_unweighted_prompt_equals_diffusers(sd1: Any) -> None:
    kw = _encode(sd1, "a photo of a cat", "blurry")
    assert kw["prompt_embeds"].shape == (1, 77, 8)
    torch.testing.assert_close(kw["prompt_embeds"], _plain(sd1, "a photo of a cat"), rtol=0, atol=1e-6)
    torch.testing.assert_close(kw["negative_prompt_embeds"], _plain(sd1, "blurry"), rtol=0, atol=1e-6)
    assert "pooled_prompt_embeds" not in kw


def test_emphasis_scales_tokens_and_restores_mean(sd1: Any) -> None:
    plain = _plain(sd1, "a cat")[0]
    weighted = _encode(sd1, "a (cat:1.5)")["prompt_embeds"][0]
    assert not torch.allclose(weighted, plain)
    torch.testing.assert_close(weighted.mean(), plain.mean(), rtol=0, atol=1e-6)
    ratio = weighted / plain  # plain * multiplier * (mean / new mean)
    scale = ratio[0, 0]
    assert abs(scale.item() - 1.0) > 1e-4
    torch.testing.assert_close(ratio[2], torch.full_like(ratio[2], 1.5 * scale.item()), rtol=1e-4, atol=1e-4)
    for position in (0, 1, 3, 50):
        torch.testing.assert_close(ratio[position], torch.full_like(ratio[position], scale.item()),
                                   rtol=1e-4, atol=1e-4)


def test_long_prompt_gives_two_chunks(sd1: Any) -> None:
    kw = _encode(sd1, " ".join(["cat"] * 100))
    assert kw["prompt_embeds"].shape == (1, 154, 8)
    assert kw["negative_prompt_embeds"].shape == (1, 154, 8)  # negative padded with empty chunks
    empty = _plain(sd1, "")
    torch.testing.assert_close(kw["negative_prompt_embeds"][:, 77:], empty, rtol=0, atol=1e-6)
    torch.testing.assert_close(kw["negative_prompt_embeds"][:, :77], empty, rtol=0, atol=1e-6)


def test_break_starts_a_new_chunk(sd1: Any) -> None:
    embeds = _encode(sd1, "a cat BREAK a dog")["prompt_embeds"]
    assert embeds.shape == (1, 154, 8)
    torch.testing.assert_close(embeds[:, :77], _plain(sd1, "a cat"), rtol=0, atol=1e-6)
    torch.testing.assert_close(embeds[:, 77:], _plain(sd1, "a dog"), rtol=0, atol=1e-6)


def test_positive_padded_to_a_longer_negative(sd1: Any) -> None:
    kw = _encode(sd1, "a cat", "x BREAK y BREAK z")
    assert kw["prompt_embeds"].shape == kw["negative_prompt_embeds"].shape == (1, 231, 8)
    torch.testing.assert_close(kw["prompt_embeds"][:, 154:], _plain(sd1, ""), rtol=0, atol=1e-6)


def test_clip_skip_matches_a1111_layer(sd1: Any) -> None:
    skip1 = _encode(sd1, "a photo of a cat")["prompt_embeds"]
    skip2 = _encode(sd1, "a photo of a cat", clip_skip=2)["prompt_embeds"]
    assert not torch.allclose(skip1, skip2)
    # A1111 "Clip skip 2" = hidden state -2 + the final layer norm
    ids = sd1.tokenizer("a photo of a cat", padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = sd1.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
        expected = sd1.text_encoder.final_layer_norm(hidden)
    torch.testing.assert_close(skip2, expected, rtol=0, atol=1e-6)


def test_openclip_sd2_style_encoder_pads_with_pad_token_and_ignores_clip_skip(sd1: Any,
                                                                              model_cache_dir: Path) -> None:
    tokenizer = load_clip_tokenizer(get_family("sd2-512").config_path / "tokenizer", model_cache_dir)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    chunker = ChunkTokenizer(tokenizer)
    chunks, _ = chunker.tokenize_line("a cat")
    assert chunker.model_input(chunks[0]) == tokenizer("a cat", padding="max_length", max_length=77).input_ids
    pipe = SimpleNamespace(text_encoder=sd1.text_encoder, tokenizer=tokenizer, config={})
    one = _encode(pipe, "a cat", arch="sd2-512")["prompt_embeds"]
    two = _encode(pipe, "a cat", clip_skip=2, arch="sd2-512")["prompt_embeds"]
    assert torch.equal(one, two)


def test_batch_rows_are_encoded_separately(sd1: Any) -> None:
    kw = encode_prompt_batch(sd1, "sd1", ["a cat", "a (dog:1.3)", "a cat"], ["", "", ""], 1)
    assert kw["prompt_embeds"].shape == (3, 77, 8)
    torch.testing.assert_close(kw["prompt_embeds"][0:1], _plain(sd1, "a cat"), rtol=0, atol=1e-6)
    assert torch.equal(kw["prompt_embeds"][0], kw["prompt_embeds"][2])
    torch.testing.assert_close(kw["prompt_embeds"][1:2], _encode(sd1, "a (dog:1.3)")["prompt_embeds"])


def test_errors_are_clear(sd1: Any) -> None:
    with pytest.raises(ConditioningError, match="strip_attention"):
        encode_prompt_batch(sd1, "flux-dev", ["a"], [""], 1)
    with pytest.raises(ConditioningError, match="2 prompts but 1 negative"):
        encode_prompt_batch(sd1, "sd1", ["a", "b"], [""], 1)


# --------------------------------------------------------------------------- SDXL


def test_sdxl_unweighted_equals_diffusers(sdxl: Any) -> None:
    kw = encode_prompt_batch(sdxl, "sdxl", ["a photo of a cat"], ["blurry"], 1)
    pe, ne, pp, npp = sdxl.encode_prompt("a photo of a cat", device="cpu", num_images_per_prompt=1,
                                         do_classifier_free_guidance=True, negative_prompt="blurry")
    assert kw["prompt_embeds"].shape == (1, 77, 12) and kw["pooled_prompt_embeds"].shape == (1, 8)
    for ours, theirs in ((kw["prompt_embeds"], pe), (kw["negative_prompt_embeds"], ne),
                         (kw["pooled_prompt_embeds"], pp), (kw["negative_pooled_prompt_embeds"], npp)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_sdxl_chunks_pooled_and_zero_negative(sdxl: Any) -> None:
    kw = encode_prompt_batch(sdxl, "sdxl", ["a cat BREAK a dog", "(tree:1.2)"], ["", ""], 2)
    assert kw["prompt_embeds"].shape == (2, 154, 12)
    assert kw["pooled_prompt_embeds"].shape == (2, 8)
    assert torch.count_nonzero(kw["negative_prompt_embeds"]) == 0  # force_zeros_for_empty_prompt
    assert torch.count_nonzero(kw["negative_pooled_prompt_embeds"]) == 0
    _, _, pooled_first_chunk, _ = sdxl.encode_prompt("a cat", device="cpu", do_classifier_free_guidance=False)
    torch.testing.assert_close(kw["pooled_prompt_embeds"][0:1], pooled_first_chunk, rtol=0, atol=1e-6)
    # clip skip is ignored for SDXL (A1111 default) ...
    skip1 = encode_prompt_batch(sdxl, "sdxl", ["a cat"], ["x"], 1)["prompt_embeds"]
    assert torch.equal(skip1, encode_prompt_batch(sdxl, "sdxl", ["a cat"], ["x"], 2)["prompt_embeds"])
    # ... unless A1111's sdxl_clip_l_skip option is on (CLIP-L features only)
    l_skip = encode_prompt_batch(sdxl, "sdxl", ["a cat"], ["x"], 3, sdxl_clip_l_skip=True)["prompt_embeds"]
    assert not torch.equal(skip1[..., :4], l_skip[..., :4]) and torch.equal(skip1[..., 4:], l_skip[..., 4:])


def test_sdxl_non_empty_negative_is_encoded(sdxl: Any) -> None:
    kw = encode_prompt_batch(sdxl, "sdxl", ["a cat"], ["blurry"], 1)
    assert torch.count_nonzero(kw["negative_prompt_embeds"]) > 0
    assert PromptEncoder(sdxl, "sdxl").zeros_for_empty_negative


# --------------------------------------------------------------------------- prompt editing


def _record_unet_inputs(pipe: Any) -> tuple[list[dict[str, torch.Tensor]], Any]:
    seen: list[dict[str, torch.Tensor]] = []

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        entry = {"embeds": kwargs["encoder_hidden_states"].clone()}
        added = kwargs.get("added_cond_kwargs") or {}
        if "text_embeds" in added:
            entry["pooled"] = added["text_embeds"].clone()
        seen.append(entry)

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


def test_schedule_kwargs_per_step(sd1: Any) -> None:
    sched = ScheduledConditioning.build(sd1, "sd1", ["a [cat:dog:2] x"], ["blurry"], steps=4)
    assert not sched.is_static and sched.tensor_inputs == ["latents", "prompt_embeds"]
    cat, dog = _encode(sd1, "a cat x", "blurry"), _encode(sd1, "a dog x", "blurry")
    for step, expected in ((0, cat), (2, cat), (3, dog)):
        kw = sched.kwargs_at(step)
        torch.testing.assert_close(kw["prompt_embeds"], expected["prompt_embeds"], rtol=0, atol=1e-5)
        torch.testing.assert_close(kw["negative_prompt_embeds"], expected["negative_prompt_embeds"])
    static = ScheduledConditioning.build(sd1, "sd1", ["a cat"], [""], steps=4)
    assert static.is_static
    assert static.callback(sd1, 0, None, {"prompt_embeds": torch.zeros(2, 77, 8)})["prompt_embeds"].sum() == 0


def test_callback_swaps_cfg_embeddings_in_a_real_sd_run(sd1: Any) -> None:
    sched = ScheduledConditioning.build(sd1, "sd1", ["a [cat:dog:1]"], ["[ugly|bad]"], steps=3)
    seen, handle = _record_unet_inputs(sd1)
    try:
        sd1(**sched.initial_kwargs(), num_inference_steps=3, guidance_scale=7.0, height=64, width=64,
            output_type="latent", callback_on_step_end=sched.callback,
            callback_on_step_end_tensor_inputs=sched.tensor_inputs, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    assert len(seen) == 3
    # A1111: step s uses the first entry with s <= end_at_step, so [(1, ugly), (2, bad), (3, ugly)] gives
    # ugly, ugly, bad for steps 0, 1, 2
    for step, (pos, neg) in enumerate([("a cat", "ugly"), ("a cat", "ugly"), ("a dog", "bad")]):
        expected = _encode(sd1, pos, neg)
        torch.testing.assert_close(seen[step]["embeds"], torch.cat([expected["negative_prompt_embeds"],
                                                                    expected["prompt_embeds"]]), rtol=0, atol=1e-5)


def test_callback_without_cfg_and_on_sdxl(sd1: Any, sdxl: Any) -> None:
    sched = ScheduledConditioning.build(sd1, "sd1", ["[cat|dog]"], [""], steps=3)
    seen, handle = _record_unet_inputs(sd1)
    try:
        sd1(**sched.initial_kwargs(), num_inference_steps=3, guidance_scale=1.0, height=64, width=64,
            output_type="latent", callback_on_step_end=sched.callback,
            callback_on_step_end_tensor_inputs=sched.tensor_inputs)
    finally:
        handle.remove()
    assert [entry["embeds"].shape[0] for entry in seen] == [1, 1, 1]
    torch.testing.assert_close(seen[1]["embeds"], _encode(sd1, "cat")["prompt_embeds"], rtol=0, atol=1e-5)
    torch.testing.assert_close(seen[2]["embeds"], _encode(sd1, "dog")["prompt_embeds"], rtol=0, atol=1e-5)

    sched = ScheduledConditioning.build(sdxl, "sdxl", ["[cat:a dog BREAK tree:1]"], [""], steps=3)
    assert sched.tensor_inputs == ["latents", "prompt_embeds", "add_text_embeds"]
    seen, handle = _record_unet_inputs(sdxl)
    try:
        sdxl(**sched.initial_kwargs(), num_inference_steps=3, guidance_scale=5.0, height=64, width=64,
             output_type="latent", callback_on_step_end=sched.callback,
             callback_on_step_end_tensor_inputs=sched.tensor_inputs)
    finally:
        handle.remove()
    dog = encode_prompt_batch(sdxl, "sdxl", ["a dog BREAK tree"], [""], 1)
    assert seen[0]["embeds"].shape == seen[2]["embeds"].shape == (2, 154, 12)
    torch.testing.assert_close(seen[2]["embeds"][1:], dog["prompt_embeds"], rtol=0, atol=1e-5)
    torch.testing.assert_close(seen[2]["pooled"][1:], dog["pooled_prompt_embeds"], rtol=0, atol=1e-5)
    assert torch.count_nonzero(seen[2]["embeds"][:1]) == 0 and torch.count_nonzero(seen[2]["pooled"][:1]) == 0
    assert not torch.allclose(seen[0]["pooled"][1:], seen[2]["pooled"][1:])
