"""Tiny random-weight vision-language models of real architectures, built offline for the local-VLM tests.

``build_tiny_vlm(kind, folder)`` saves a model (``save_pretrained``) and its processor (a word-level
tokenizer made with the ``tokenizers`` library, the architecture's own image processor, a chat template)
in ``folder``. Kinds: ``ernie4_5_vl_moe`` (ERNIE 4.5 VL's MoE architecture) and ``qwen2_5_vl``.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ("a red green blue yellow circle square triangle heart on the background what is this image shape colour "
         "describe answer question user assistant system small large in centre top left right bottom").split()

#: a chat template of the usual role-tagged kind; images become the processor's image placeholder
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}IMAGE_SLOT"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def _tokenizer(specials: list[str], named: dict[str, str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(["<unk>", "<pad>", "<s>", "</s>", *specials, *WORDS,
                                                  *"abcdefghijklmnopqrstuvwxyz0123456789.,?!'"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", extra_special_tokens=named)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


def build_tiny_vlm(kind: str, folder: Path, seed: int = 0) -> Path:
    import torch

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "ernie4_5_vl_moe":
        _ernie(folder)
    elif kind == "qwen2_5_vl":
        _qwen(folder)
    else:
        raise ValueError(kind)
    return folder


def _ernie(folder: Path) -> None:
    from transformers import (Ernie4_5_VLMoeConfig, Ernie4_5_VLMoeForConditionalGeneration,
                              Ernie4_5_VLMoeImageProcessor, Ernie4_5_VLMoeProcessor, Ernie4_5_VLMoeVideoProcessor)

    named = {"image_token": "<|IMAGE_PLACEHOLDER|>", "image_start_token": "<|IMAGE_START|>",
             "image_end_token": "<|IMAGE_END|>", "video_token": "<|VIDEO_PLACEHOLDER|>",
             "video_start_token": "<|VIDEO_START|>", "video_end_token": "<|VIDEO_END|>"}
    specials = list(named.values()) + ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tokenizer = _tokenizer(specials, named)
    ids = {key + "_id": tokenizer.convert_tokens_to_ids(token) for key, token in named.items()}
    image_processor = Ernie4_5_VLMoeImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    video_processor = Ernie4_5_VLMoeVideoProcessor(draw_on_frames=False)
    template = CHAT_TEMPLATE.replace("IMAGE_SLOT", "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>")
    processor = Ernie4_5_VLMoeProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=video_processor, chat_template=template)
    config = Ernie4_5_VLMoeConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, moe_intermediate_size=[16, 16], moe_k=2,
                         moe_num_experts=4, moe_num_shared_experts=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 500000.0, "mrope_section": [2, 2, 4]},
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id),
        vision_config=dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, patch_size=14),
        **ids)
    model = Ernie4_5_VLMoeForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _qwen(folder: Path) -> None:
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    named = {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>", "vision_start_token": "<|vision_start|>",
             "vision_end_token": "<|vision_end|>"}
    specials = list(named.values()) + ["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    tokenizer = _tokenizer(specials, named)
    image_processor = Qwen2VLImageProcessor(min_pixels=28 * 28, max_pixels=56 * 56)
    template = CHAT_TEMPLATE.replace("IMAGE_SLOT", "<|vision_start|><|image_pad|><|vision_end|>")
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(), chat_template=template)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id),
        vision_config=dict(depth=1, hidden_size=32, num_heads=2, intermediate_size=64, out_hidden_size=32,
                           fullatt_block_indexes=[0], window_size=56, patch_size=14),
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        video_token_id=tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"))
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
