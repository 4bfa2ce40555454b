"""Prompt templates with category identifier tokens (no Django).

The reference pipeline draws prompts from a list of (prompt, negative prompt, image scale);
ICASSP 2025 adds a category identifier token per product category. A template's `{}` is a colour
slot (as in the reference list), filled from a fixed palette by the seed; `{category}` and
`{title}` are the product's. Training (train_diffuser) renders prompts with the same tokens, so
the token means the same thing at training and at serving time.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

PALETTE = ("white", "beige", "grey", "blue", "green", "pink", "yellow", "brown", "teal", "cream")


@dataclass(frozen=True)
class PromptTemplate:
    prompt: str
    negative_prompt: str = ""
    image_scale: float = 0.74  # longer side of the product / canvas side

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("prompt is empty")
        if not 0.05 <= float(self.image_scale) <= 1.0:
            raise ValueError(f"image_scale must be in [0.05, 1], got {self.image_scale}")


DEFAULT_TEMPLATES = (
    PromptTemplate(
        "front view of a product placed on white desktop, bright indoor scene, {} walls, "
        "commercial photography",
        "lowres, watermark, text, blurry, worst quality",
        0.74,
    ),
    PromptTemplate(
        "minimalist scene, front view of a product placed on a table, {} walls, photorealistic",
        "lowres, watermark, text, blurry, worst quality",
        0.78,
    ),
    PromptTemplate(
        "indoor scene, a product on a wooden desktop, flowers, leaves, {} tones, bokeh",
        "lowres, bad anatomy, text, error, cropped, jpeg artifacts, signature",
        0.70,
    ),
)


def parse_templates(data) -> list[PromptTemplate]:
    """Templates from parsed JSON: a list of strings or of {prompt, negative_prompt,
    image_scale} objects. ValueError names the entry and field."""
    if not isinstance(data, list) or not data:
        raise ValueError("prompts must be a non-empty JSON list")
    out = []
    for i, entry in enumerate(data):
        if isinstance(entry, str):
            entry = {"prompt": entry}
        if not isinstance(entry, dict):
            raise ValueError(f"prompt {i}: expected a string or an object")
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {i}: 'prompt' must be a non-empty string")
        neg = entry.get("negative_prompt", "")
        if not isinstance(neg, str):
            raise ValueError(f"prompt {i}: 'negative_prompt' must be a string")
        scale = entry.get("image_scale", 0.74)
        try:
            out.append(PromptTemplate(prompt, neg, float(scale)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"prompt {i}: {exc}") from None
    return out


def load_templates(path: str | Path) -> list[PromptTemplate]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    return parse_templates(data)


def templates_to_json(templates) -> list[dict]:
    return [asdict(t) for t in templates]


def category_token(category: str) -> str:
    """A stable rare pseudo-word for a category ('' for none): the identifier token."""
    if not category:
        return ""
    digest = hashlib.sha256(category.strip().lower().encode()).digest()
    consonants = "bcdfghjklmnpqrstvwxz"
    return "z" + "".join(consonants[b % len(consonants)] for b in digest[:4])


def render(
    template: PromptTemplate, *, category: str = "", title: str = "", seed: int = 0,
    use_token: bool = True,
) -> tuple[str, str, list[str]]:  # fmt: skip
    """(prompt, negative prompt, category tokens) for one product and seed."""
    colour = PALETTE[int(seed) % len(PALETTE)]
    leaf = category.rsplit("/", 1)[-1].replace("_", " ") if category else ""
    prompt = template.prompt.replace("{}", colour)
    prompt = prompt.replace("{category}", leaf).replace("{title}", title)
    tokens = []
    token = category_token(category) if use_token else ""
    if token:
        tokens = [token]
        prompt = f"{token} {leaf}, {prompt}"
    return prompt, template.negative_prompt, tokens
