"""The token count beside a prompt box: A1111's "N/75" with CLIP, the T5 count and limit for FLUX, the
loaded model's tokenizer first, and the hidden event the page asks it through (webui/page_channel.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from modules.generation.prompts.token_count import (TokenCounter, clip_target, clip_token_count, encoded_texts,
                                                   t5_token_count)
from modules.models.families import get_family
from modules.models.tokenizers import load_clip_tokenizer


@pytest.fixture(scope="module")
def clip(model_cache_dir: Path) -> Any:
    return load_clip_tokenizer(get_family("sd1").config_path / "tokenizer", model_cache_dir)


@pytest.fixture
def counter(model_cache_dir: Path) -> TokenCounter:
    return TokenCounter(lambda: None, model_cache_dir)


def words(n: int) -> str:
    return " ".join(["cat"] * n)  # "cat" is one CLIP token


def test_the_limit_moves_at_the_75_token_boundary(counter: TokenCounter) -> None:
    assert counter.count(words(74)).text == "74/75"
    assert counter.count(words(75)).text == "75/75"
    assert counter.count(words(76)).text == "76/150"
    assert counter.count(words(150)).text == "150/150"
    assert counter.count(words(151)).text == "151/225"
    assert counter.count("").text == "0/75"
    assert [clip_target(n) for n in (0, 1, 75, 76)] == [75, 75, 75, 150]


def test_prompt_syntax_is_read_as_the_generation_reads_it(counter: TokenCounter) -> None:
    assert counter.count("(cat:1.3) [dog] ((bird))").count == 3  # brackets and weights are not tokens
    assert counter.count("cat <lora:some_lora:0.8> dog <hypernet:x:1>").count == 2  # tags removed
    assert counter.count("cat BREAK dog").text == "76/150"  # BREAK fills the chunk it ends
    assert counter.count(r"\(cat\)").count == 3  # escaped brackets are text
    # prompt editing: the longest text the sampler will encode counts
    assert counter.count(f"[{words(3)}:{words(80)}:5]").text == "80/150"
    assert encoded_texts("a AND b [x:y:0.5]", steps=10) == ["a", " b x", " b y"]


def test_the_loaded_models_tokenizer_is_used(clip: Any, model_cache_dir: Path) -> None:
    seen: list[str] = []

    class Spy:
        def __getattr__(self, name: str) -> Any:
            return getattr(clip, name)

        def __call__(self, texts: list[str], **kwargs: Any) -> Any:
            seen.extend(texts)
            return clip(texts, **kwargs)

    family = get_family("sd1")
    active = SimpleNamespace(model=SimpleNamespace(family=family, pipeline=SimpleNamespace(tokenizer=Spy())))
    counted = TokenCounter(lambda: active, model_cache_dir).count("a red cat")
    assert counted.text == "3/75" and seen == ["a red cat"]


class FakeT5:
    """One token per word plus the end-of-text token, as T5 counts a plain English prompt."""

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        assert kwargs["add_special_tokens"] is True and kwargs["truncation"] is False
        return {"input_ids": [[1] * len(text.split()) + [0] for text in texts]}


@pytest.mark.parametrize(("family_id", "limit"), [("flux-dev", 512), ("flux-schnell", 256)])
def test_flux_counts_t5_tokens_against_the_familys_limit(family_id: str, limit: int, model_cache_dir: Path) -> None:
    family = get_family(family_id)
    pipeline = SimpleNamespace(tokenizer_2=object())  # never called from here: the worker's
    active = SimpleNamespace(model=SimpleNamespace(family=family, pipeline=pipeline))
    counter = TokenCounter(lambda: active, model_cache_dir)
    counted = counter.count("a (red:1.4) cat BREAK on a mat <lora:x:1>")
    # "a red cat on a mat": ▁ a ▁red ▁cat ▁on ▁ a ▁mat </s> (no brackets, weight, BREAK or tag)
    assert (counted.count, counted.limit, counted.encoder, counted.over) == (9, limit, "t5", False)
    # with its end-of-text token a long prompt goes past the limit
    assert counter.count("word " * limit).over and not counter.count("word " * (limit - 1)).over


def test_t5_count_with_any_tokenizer() -> None:
    assert t5_token_count(FakeT5(), "a (red:1.4) cat BREAK on a mat <lora:x:1>", 512).text == "7/512"


def test_the_shipped_t5_tokenizer_counts_without_a_model(model_cache_dir: Path) -> None:
    counter = TokenCounter(lambda: None, model_cache_dir)
    t5 = counter._shipped_t5("flux-dev")
    assert t5_token_count(t5, "a (red:1.2) cat", 512).text == "5/512"  # "▁", "a", "▁red", "▁cat", "</s>"
    assert counter._shipped_t5("flux-dev") is t5  # read once


def test_a_huge_prompt_is_counted_up_to_max_chars(clip: Any, counter: TokenCounter) -> None:
    from modules.generation.prompts.token_count import MAX_CHARS

    assert clip_token_count(clip, words(10)).count == 10
    assert counter.count("cat " * MAX_CHARS).count == MAX_CHARS // 4


# ---------------------------------------------------------------------------- the page's questions


def _ctx(tmp_path: Path, **settings: Any) -> Any:
    values = {"notification_audio": False, "notification_browser": False, **settings}
    return SimpleNamespace(settings=SimpleNamespace(current=SimpleNamespace(**values)),
                           paths=SimpleNamespace(scrub=lambda text: text.replace(str(tmp_path), "<data>")))


def test_page_channel_answers_token_counts_and_options(tmp_path: Path, counter: TokenCounter) -> None:
    from webui.page_channel import answer

    ctx = _ctx(tmp_path, notification_audio=True)
    reply = json.loads(answer(ctx, counter, json.dumps({"id": 7, "op": "token_count", "text": words(76)})))
    assert reply == {"id": 7, "count": 76, "limit": 150, "text": "76/150", "encoder": "clip", "over": False}
    reply = json.loads(answer(ctx, counter, json.dumps({"id": 8, "op": "options"})))
    assert reply == {"id": 8, "notification_audio": True, "notification_browser": False}


@pytest.mark.parametrize(("question", "error"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"id": 3, "op": "format_disk"}', "unknown question 'format_disk'"),
    ('{"id": 4, "op": "token_count", "text": 5}', "text must be a string"),
])
def test_page_channel_refuses_bad_questions_readably(tmp_path: Path, counter: TokenCounter, question: str,
                                                     error: str) -> None:
    from webui.page_channel import answer

    reply = json.loads(answer(_ctx(tmp_path), counter, question))
    assert error in reply["error"] and "Traceback" not in reply["error"]


def test_page_channel_counts_the_prompt_with_the_chosen_styles(tmp_path: Path, counter: TokenCounter) -> None:
    from webui.page_channel import answer

    class Styles:
        def apply_styles(self, prompt: str, negative: str, names: list[str]) -> tuple[str, str]:
            if names != ["rgb"]:
                raise KeyError(names[0])
            return f"{prompt}, red, green, blue", f"{negative}, fog"

    ctx = _ctx(tmp_path)
    ctx.styles = Styles()

    def ask(**question: Any) -> int:
        return json.loads(answer(ctx, counter, json.dumps({"id": 1, "op": "token_count", **question})))["count"]

    assert ask(text="cat") == 1
    assert ask(text="cat", styles=["rgb"]) == 7
    assert ask(text="cat", styles=["rgb"], negative=True) == 3  # "cat, fog"
    assert ask(text="cat", styles=["gone"]) == 1  # an unknown style: the text as typed


def test_an_embedding_counts_its_vectors(tmp_path: Path, model_cache_dir: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from modules.generation.prompts.token_count import embedding_vector_counts, with_embedding_vectors

    folder = tmp_path / "embeddings"
    (folder / "sub").mkdir(parents=True)
    save_file({"emb_params": torch.zeros(8, 768)}, str(folder / "sub" / "EasyNeg.safetensors"))
    (folder / "broken.pt").write_bytes(b"not a torch file")
    vectors = embedding_vector_counts([folder])
    assert vectors(["a cat, easyneg", "broken"]) == {"EasyNeg": 8}  # any case; an unreadable one stays text
    assert vectors(["easynegative"]) == {}  # a whole word only
    assert with_embedding_vectors(["x EasyNeg, y"], {"EasyNeg": 3}) == ["x a a a, y"]
    counter = TokenCounter(lambda: None, model_cache_dir, vectors=vectors)
    assert counter.count("cat, easyneg").text == "10/75"  # cat , and 8 vectors
    assert counter.count(words(67) + " easyneg").text == "75/75"
    assert counter.count(words(68) + " EasyNeg").text == "76/150"
    assert embedding_vector_counts([tmp_path / "none"])(["easyneg"]) == {}
    read: list[str] = []

    class Cache:  # the jobs' EmbeddingCache: files read once for jobs and counts alike
        def get(self, path: Path, parse: Any) -> Any:
            read.append(path.name)
            return parse(path)

    assert embedding_vector_counts([folder], lambda: Cache())(["easyneg"]) == {"EasyNeg": 8}
    assert read == ["EasyNeg.safetensors"]
