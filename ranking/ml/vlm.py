"""Explicit/implicit creative attributes from a multimodal LLM (the JD approach): a transformers
vision-language model loaded from a LOCAL folder (`local_files_only=True`, never downloads) is
prompted for one JSON object, which is validated against `ATTRIBUTE_SCHEMA`.

Any `AutoModelForImageTextToText` folder with an `AutoProcessor` works (LLaVA, Qwen2-VL, ...).
`build_tiny_vlm(path)` writes a random tiny LLaVA (CLIP vision tower + Llama) with a word-level
tokenizer so tests and the demo exercise the whole path offline; its answers are noise, so they
come back as `error` (the schema check is what keeps noise out of the ranker).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

PROMPT = (
    "Describe this advertising image as ONE JSON object with keys: "
    '"background_colour" (a colour name), "has_logo" (true/false), "promotion" (true/false: '
    'price cut, discount or sale text), "audience" (one of "general", "young", "family", '
    '"senior", "professional"), "style" (one of "studio", "lifestyle", "outdoor", "graphic"). '
    "Answer with the JSON object only."
)


@dataclass(frozen=True)
class Field:
    type: type
    choices: tuple = ()
    required: bool = True


ATTRIBUTE_SCHEMA: dict[str, Field] = {
    "background_colour": Field(str),
    "has_logo": Field(bool),
    "promotion": Field(bool),
    "audience": Field(str, ("general", "young", "family", "senior", "professional")),
    "style": Field(str, ("studio", "lifestyle", "outdoor", "graphic"), required=False),
}


def parse_answer(text: str, schema: dict[str, Field] = ATTRIBUTE_SCHEMA) -> dict:
    """The first JSON object in `text`, checked against `schema`; ValueError says what is wrong.
    Booleans and choices become numeric ranker inputs (`audience=young`: 1.0)."""
    match = re.search(r"\{.*\}", text, re.S)
    if not match:
        raise ValueError("no JSON object in the answer")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg})")
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    out: dict = {}
    for key, spec in schema.items():
        if key not in data:
            if spec.required:
                raise ValueError(f"missing key {key!r}")
            continue
        value = data[key]
        if spec.type is bool and not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false")
        if spec.type is str:
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{key} must be a non-empty string")
            value = value.strip().lower()
            if spec.choices and value not in spec.choices:
                raise ValueError(f"{key} must be one of {', '.join(spec.choices)}")
        out[key] = value
        if spec.type is bool:
            out[key] = float(value)
        elif spec.choices:
            for choice in spec.choices:
                out[f"{key}={choice}"] = float(value == choice)
    return out


@dataclass
class VlmConfig:
    path: str  # local folder: model + processor (save_pretrained layout)
    max_new_tokens: int = 96  # a JSON object of the schema fits in ~60 tokens
    prompt: str = PROMPT
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


class VlmExtractor:
    name = "vlm"
    version = "1"

    def __init__(self, config: VlmConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.config = config
        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(config.path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(config.path, local_files_only=True)
        self.model.eval().to(config.device)
        # The folder's name and its config hash make the cache key: another model, another row.
        self.version = f"1:{Path(config.path).name}"

    def _inputs(self, image: Image.Image):
        processor = self.processor
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": self.config.prompt}],
            }
        ]
        if getattr(processor, "chat_template", None):
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
        else:
            token = getattr(processor, "image_token", "<image>")
            text = f"USER: {token}\n{self.config.prompt} ASSISTANT:"
        return processor(images=image.convert("RGB"), text=text, return_tensors="pt")

    def answer(self, image: Image.Image) -> str:
        inputs = self._inputs(image).to(self.config.device)
        with self.torch.no_grad():
            out = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False
            )
        new = out[0, inputs["input_ids"].shape[1] :]
        return self.processor.decode(new, skip_special_tokens=True)

    def extract(self, creative: Image.Image, product: Image.Image | None = None, box=None) -> dict:
        """Schema-checked attributes; ValueError (with the raw answer) when the model's answer
        does not fit the schema."""
        text = self.answer(creative)
        try:
            return parse_answer(text)
        except ValueError as exc:
            raise ValueError(f"{exc}; answer: {text[:200]!r}")


def build_tiny_vlm(path: str | Path, *, seed: int = 0) -> Path:
    """A random tiny LLaVA folder (vision 32px, 2 layers; text 2 layers, word-level vocab)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    path = Path(path)
    words = sorted(set(re.findall(r"\w+|[^\w\s]", PROMPT + " USER ASSISTANT true false null")))
    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    vocab = {w: i for i, w in enumerate(specials + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    image_size, patch = 32, 8
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(image_size // patch) ** 2,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": image_size},
            crop_size={"height": image_size, "width": image_size},
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS token, dropped by "default"
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
