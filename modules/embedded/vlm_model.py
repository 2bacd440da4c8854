"""The shapes VLM's parts: a LLaVA (``LlavaForConditionalGeneration``) scaled down, its word-level tokenizer over
the world's vocabulary, its processor and chat template; built offline, saved with ``save_pretrained`` so that
``AutoProcessor`` / ``AutoModelForImageTextToText`` load it like any VLM in ``models/VLM/``.

The vision tower is a ViT of the world classifier's shape (``CLASSIFIER_CONFIG``) holding
``atelier-shapes-vit``'s trained encoder (kept frozen in training); every token of its last layer, CLS included,
goes to the language model, a small Llama.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.embedded.classifier import CLASSIFIER_CONFIG

VLM_NAME = "atelier-shapes-vlm"
IMAGE_TOKEN = "<image>"
END_TOKEN = "<|end|>"
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<s>", END_TOKEN, IMAGE_TOKEN, "<|system|>", "<|user|>",
                                   "<|assistant|>")

TEXT_CONFIG: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 384,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True,
}

# Turns in the order the template writes them; an image part is one <image>, which the processor expands to
# one token per patch. Text parts are lower-cased (the vocabulary is).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] | lower }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}"
    "{% elif part['type'] == 'text' %}{{ ' ' + part['text'] | lower }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


def build_tokenizer(words: list[str]) -> Any:
    """A word-level fast tokenizer: lower-cased, split on words and punctuation, unknown words -> <unk>."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *words])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token=END_TOKEN,
                                        additional_special_tokens=list(SPECIAL_TOKENS[4:]))
    tokenizer.padding_side = "left"
    return tokenizer


def build_processor(words: list[str]) -> Any:
    """The processor: the classifier's image processor, the tokenizer, the chat template."""
    from transformers import LlavaProcessor

    from modules.embedded.classifier import build_processor as image_processor

    return LlavaProcessor(image_processor=image_processor(CLASSIFIER_CONFIG["image_size"]),
                          tokenizer=build_tokenizer(words), patch_size=CLASSIFIER_CONFIG["patch_size"],
                          vision_feature_select_strategy="full", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def image_tokens() -> int:
    """Tokens one image takes: the ViT's CLS token (which the classifier reads its labels from), one per patch."""
    return (CLASSIFIER_CONFIG["image_size"] // CLASSIFIER_CONFIG["patch_size"]) ** 2 + 1


def build_model(tokenizer: Any, text_config: dict[str, Any] = TEXT_CONFIG) -> Any:
    """A fresh LlavaForConditionalGeneration: the classifier-shaped ViT tower, a small Llama."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    vision = {k: v for k, v in CLASSIFIER_CONFIG.items()}
    vision["model_type"] = "vit"
    text = dict(text_config, model_type="llama", vocab_size=len(tokenizer),
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
                         image_seq_length=image_tokens(), vision_feature_select_strategy="full",
                         vision_feature_layer=-1, projector_hidden_act="gelu",
                         tie_word_embeddings=bool(text_config.get("tie_word_embeddings", False)))
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def start_vision_from_classifier(model: Any, classifier_folder: Path) -> bool:
    """Copy the world classifier's ViT encoder into the vision tower (False when the classifier is missing)."""
    from transformers import AutoModelForImageClassification

    if not (classifier_folder / "config.json").is_file():
        return False
    classifier = AutoModelForImageClassification.from_pretrained(classifier_folder, local_files_only=True)
    missing, unexpected = model.model.vision_tower.load_state_dict(classifier.vit.state_dict(), strict=False)
    if unexpected or any(not name.startswith("pooler.") for name in missing):
        raise ValueError(f"the classifier's encoder does not fit the vision tower: {missing} {unexpected}")
    return True
