"""Caption encoders: a tiny BERT with a character tokenizer built in code, or a local folder."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from torch import nn

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
CHARS = string.ascii_lowercase + string.digits + " -_,.:;/&'()+%!?\"#"


def build_char_tokenizer():
    """A character-level fast tokenizer constructed in code (no downloads, no vocab files)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


def _from_config_dict(cfg_dict: dict[str, Any]) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    d = dict(cfg_dict)
    cfg = AutoConfig.for_model(d.pop("model_type"), **d)
    try:
        return AutoModel.from_config(cfg, add_pooling_layer=False)
    except TypeError:
        return AutoModel.from_config(cfg)


def _from_folder(source: str) -> nn.Module:
    """A local text encoder WITHOUT its pooler (BERT/RoBERTa folders ship one): RFNet reads the
    token states only, and a saved RFNet is rebuilt from the config without a pooler, so the
    two must agree or reloading `best/` fails on unexpected pooler weights."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(source, local_files_only=True, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler do not take the argument
        return AutoModel.from_pretrained(source, local_files_only=True)


class CaptionEncoder(nn.Module):
    """Wraps a transformers text encoder; returns (tokens (B, L, H), padding mask (B, L))."""

    def __init__(
        self,
        source: str,
        text_config: dict[str, Any] | None,
        max_length: int,
        tokenizer_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.max_length = max_length
        if text_config is not None and text_config.get("model_type"):
            # Rebuilding a saved RFNet: weights come from its state dict.
            self.encoder = _from_config_dict(text_config)
            self.tokenizer = self._load_tokenizer(tokenizer_dir, source)
        elif source == "tiny":
            from transformers import BertConfig

            self.tokenizer = build_char_tokenizer()
            kw = {
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
            }
            kw.update(text_config or {})
            cfg = BertConfig(
                vocab_size=len(self.tokenizer),
                max_position_embeddings=max(64, max_length + 2),
                type_vocab_size=1,
                **kw,
            )
            self.encoder = _from_config_dict(cfg.to_dict())
        else:
            from transformers import AutoTokenizer

            if not Path(source).is_dir():
                raise ValueError(f"text encoder folder not found: {source}")
            self.encoder = _from_folder(source)
            self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        self.hidden_size = int(self.encoder.config.hidden_size)

    @staticmethod
    def _load_tokenizer(tokenizer_dir: str | Path | None, source: str):
        from transformers import AutoTokenizer

        if tokenizer_dir is not None and Path(tokenizer_dir).is_dir():
            return AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        if source == "tiny":
            return build_char_tokenizer()
        return AutoTokenizer.from_pretrained(source, local_files_only=True)

    def resolved_config(self) -> dict[str, Any]:
        return self.encoder.config.to_dict()

    def tokenize(self, captions: list[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(
            [c or "" for c in captions],
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"caption_ids": out["input_ids"], "caption_mask": out["attention_mask"]}

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
