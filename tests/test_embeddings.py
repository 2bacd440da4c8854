"""Textual inversion: A1111 file formats, exact use of the vectors by the chunked A1111 encoder (an
embedding holding the token vectors of "red circle" encodes exactly like the words), SDXL clip_l/clip_g
with a correct pooled output, restoration, skipping of misfits, the hook, and the txt2img runner."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from modules.generation.prompts.conditioning import PromptEncoder
from modules.generation.addons.embeddings import (EmbeddingCache, EmbeddingError, EmbeddingLibrary, apply_embeddings,
                                           embeddings_hook, read_embedding, replace_names)
from modules.generation.addons.hooks import SamplingContext
from modules.models.hashing import HashCache
from tests.fixtures.tiny_models import build_tiny_components, tiny_pipeline
from tests.fixtures.tiny_networks import a1111_embedding_pt, embedding_safetensors, write_safetensors


@pytest.fixture(scope="module")
def sd1(model_cache_dir: Path):
    return tiny_pipeline("sd1", build_tiny_components("sd1"), model_cache_dir)


@pytest.fixture(scope="module")
def sdxl(model_cache_dir: Path):
    return tiny_pipeline("sdxl", build_tiny_components("sdxl"), model_cache_dir)


def _rows(tokenizer, encoder, words: str) -> torch.Tensor:
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return encoder.get_input_embeddings().weight[ids].detach().clone()


def _encode(pipe, text: str):
    return PromptEncoder(pipe, "ldm-unet").encode([text])


def test_file_formats(tmp_path) -> None:
    vec = torch.randn(2, 8)
    pt = read_embedding(a1111_embedding_pt(tmp_path / "a.pt", vec))
    assert pt.name == "a" and pt.count == 2 and pt.width == 8 and torch.equal(pt.vectors[""], vec)
    st = read_embedding(embedding_safetensors(tmp_path / "b.safetensors", vec))
    assert torch.equal(st.vectors[""], vec)
    xl = read_embedding(embedding_safetensors(tmp_path / "c.safetensors", {"clip_l": torch.randn(3, 4),
                                                                           "clip_g": torch.randn(3, 8)}))
    assert xl.count == 3 and xl.width == 12 and set(xl.vectors) == {"clip_l", "clip_g"}
    torch.save({"<concept>": torch.randn(8)}, tmp_path / "d.bin")
    assert read_embedding(tmp_path / "d.bin").vectors[""].shape == (1, 8)
    write_safetensors(tmp_path / "e.safetensors", {"x": torch.zeros(2), "y": torch.zeros(2)})
    with pytest.raises(EmbeddingError, match="not a textual-inversion embedding"):
        read_embedding(tmp_path / "e.safetensors")
    torch.save({"string_to_param": {"*": torch.zeros(1, 8)}, "obj": Path("x")}, tmp_path / "f.pt")
    with pytest.raises(EmbeddingError, match="cannot be read"):
        read_embedding(tmp_path / "f.pt")  # a pickled class: refused by the weights-only loader


def test_vectors_reach_the_encoder_exactly_and_everything_is_restored(sd1, tmp_path) -> None:
    rows = _rows(sd1.tokenizer, sd1.text_encoder, "red circle")
    emb = read_embedding(a1111_embedding_pt(tmp_path / "RedThing.pt", rows))
    tokenizer, table = sd1.tokenizer, sd1.text_encoder.get_input_embeddings()
    words = _encode(sd1, "a red circle, blue")
    plain_name = _encode(sd1, "a redthing, blue")
    with apply_embeddings(sd1, [emb]) as replacements:
        assert replacements == {"RedThing": "<ti-0> <ti-0>_1"}
        assert sd1.tokenizer is not tokenizer and len(tokenizer) == 49408
        text = replace_names(["a (REDTHING:1.0), blue", "redthingx"], replacements)
        assert text == ["a (<ti-0> <ti-0>_1:1.0), blue", "redthingx"]
        assert torch.equal(_encode(sd1, text[0]).embeds, words.embeds)
    assert sd1.tokenizer is tokenizer and sd1.text_encoder.get_input_embeddings() is table
    assert torch.equal(_encode(sd1, "a redthing, blue").embeds, plain_name.embeds)


def test_sdxl_clip_l_and_clip_g_with_the_right_pooled_output(sdxl, tmp_path) -> None:
    vectors = {"clip_l": _rows(sdxl.tokenizer, sdxl.text_encoder, "cat"),
               "clip_g": _rows(sdxl.tokenizer_2, sdxl.text_encoder_2, "cat")}
    emb = read_embedding(embedding_safetensors(tmp_path / "kitty.safetensors", vectors))
    words = _encode(sdxl, "a photo of cat")
    eos = sdxl.text_encoder_2.text_model.eos_token_id
    with apply_embeddings(sdxl, [emb]) as replacements:
        cond = _encode(sdxl, replace_names(["a photo of kitty"], replacements)[0])
    assert torch.equal(cond.embeds, words.embeds)
    assert torch.equal(cond.pooled, words.pooled)
    assert sdxl.text_encoder_2.text_model.eos_token_id == eos


def test_misfit_embeddings_are_left_as_text(sd1, sdxl, tmp_path) -> None:
    sd1_emb = read_embedding(a1111_embedding_pt(tmp_path / "wide.pt", torch.randn(1, 16)))
    with apply_embeddings(sd1, [sd1_emb]) as replacements:
        assert replacements == {}
    xl_only = read_embedding(embedding_safetensors(tmp_path / "xl.safetensors", {"clip_l": torch.randn(1, 4),
                                                                                 "clip_g": torch.randn(1, 8)}))
    with apply_embeddings(sd1, [xl_only]) as replacements:
        assert replacements == {}
    with apply_embeddings(sdxl, [sd1_emb]) as replacements:
        assert replacements == {}


def test_library_and_hook(sd1, tmp_path) -> None:
    folder = tmp_path / "embeddings"
    path = a1111_embedding_pt(folder / "style" / "MyStyle.pt", torch.randn(2, 8))
    a1111_embedding_pt(folder / "unused.pt", torch.randn(1, 8))
    library = EmbeddingLibrary((folder,))
    assert set(library.used_in(["a cat, mystyle", "x"])) == {"MyStyle"}
    assert library.used_in(["mystylex unusedy"]) == {}
    hashes = HashCache(tmp_path / "h.json")
    hook = embeddings_hook(folder, hashes, EmbeddingCache())
    ctx = SamplingContext(pipe=sd1, model=None, req=None, task="txt2img", prompts=["a cat"],  # type: ignore[arg-type]
                          negatives=["MyStyle, ugly"], seeds=[1], batch_index=0)
    tokenizer = sd1.tokenizer
    with hook(ctx):
        assert ctx.negatives == ["<ti-0> <ti-0>_1, ugly"] and ctx.prompts == ["a cat"]
        assert sd1.tokenizer is not tokenizer
    assert sd1.tokenizer is tokenizer
    assert ctx.infotext_params["TI hashes"] == f"MyStyle: {hashes.sha256(path)[:12]}"


def test_through_the_txt2img_runner(tiny_checkpoints, model_cache_dir, tmp_path) -> None:
    from modules.generation.requests import Txt2ImgRequest
    from modules.generation.runners.txt2img import OutputOptions, run_txt2img
    from modules.jobs.progress import JobControl
    from modules.models.catalog import CheckpointInfo
    from modules.models.loader import LoadOptions, load_model
    from modules.models.manager import ActiveModel

    ckpt = tiny_checkpoints["sd1"]["single"]
    model = load_model(ckpt, LoadOptions(cache_dir=model_cache_dir))
    model.pipeline.set_progress_bar_config(disable=True)
    active = ActiveModel(info=CheckpointInfo(ckpt, ckpt.name, False), model=model, sha256="0" * 64, load_seconds=0)
    pipe = model.pipeline
    a1111_embedding_pt(tmp_path / "emb" / "circly.pt", _rows(pipe.tokenizer, pipe.text_encoder, "red circle"))
    hooks = [embeddings_hook(tmp_path / "emb", HashCache(tmp_path / "h.json"), EmbeddingCache())]

    def run(prompt: str):
        req = Txt2ImgRequest(prompt=prompt, steps=2, width=64, height=64, seed=5, sampler_name="Euler")
        return run_txt2img(req, active, JobControl(), OutputOptions(save=False, outdir=tmp_path), hooks=hooks)

    words, emb = run("a red circle"), run("a circly")
    assert words.images[0].tobytes() == emb.images[0].tobytes()
    assert emb.infotexts[0].startswith("a circly\n") and 'TI hashes: "circly: ' in emb.infotexts[0]
