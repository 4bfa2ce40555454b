"""Parameter forms of generation's job kinds (validated at enqueue, re-cleaned by the runner).

Models are named by registry name ("latest" resolves to a concrete name at enqueue, so the job
records what it used); products by SKU list, category or all; seeds as "0,1,2" or "0-9"; a style
reference by the storage name of a stored image (the admin form may upload one instead: it is
stored, content addressed, once every other field is valid, and the job records its name)."""

from __future__ import annotations

import re

from django import forms
from django.core.exceptions import ValidationError

from generation import plugins, selectors
from generation.ml.config import PRESETS
from generation.ml.prompts import parse_templates


class DefaultsForm(forms.Form):
    """Missing optional values take the field's initial value (CLI/API send what they change)."""

    def clean(self):
        cleaned = super().clean()
        for name, field in self.fields.items():
            if cleaned.get(name) in (None, "") and field.initial is not None:
                cleaned[name] = field.initial
        return cleaned


def parse_seeds(value: str, limit: int = 1000) -> list[int]:
    """'0,1,2' / '0-9' / '3 5 8' → seeds; ValidationError names the bad part."""
    seeds: list[int] = []
    for part in re.split(r"[,\s]+", (value or "").strip()):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a or b - a >= limit:
                raise ValidationError(f"Bad seed range {part!r}.")
            seeds.extend(range(a, b + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise ValidationError(f"Bad seed {part!r}: use integers, commas and ranges (0-9).")
    if not seeds:
        raise ValidationError("Give at least one seed.")
    if len(seeds) > limit:
        raise ValidationError(f"At most {limit} seeds.")
    return list(dict.fromkeys(seeds))


def parse_skus(value) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    return [s for s in re.split(r"[,\s]+", (value or "").strip()) if s]


def clean_model_name(value: str) -> str:
    model = selectors.resolve_diffusion_model(value or "latest")
    if model.status != model.Status.READY:
        raise ValidationError(f"Diffusion model {model.name!r} is {model.status}.")
    return model.name


class GenerateForm(DefaultsForm):
    model = forms.CharField(initial="latest", help_text="Registry name or 'latest'.")
    skus = forms.CharField(required=False, help_text="SKUs, comma- or space-separated.")
    category = forms.CharField(required=False, help_text="Category (prefix match on '/').")
    all_products = forms.BooleanField(required=False)
    prompts = forms.JSONField(
        required=False,
        help_text="JSON list of templates ({prompt, negative_prompt, image_scale} or strings); "
        "empty: the built-in reference templates.",
    )
    seeds = forms.CharField(initial="0,1,2")
    size = forms.IntegerField(
        initial=0,
        min_value=0,
        max_value=2048,
        help_text="Canvas px; 0 = the model's own size (512 for SD).",
    )
    steps = forms.IntegerField(initial=40, min_value=1, max_value=500)
    guidance = forms.FloatField(initial=7.5, min_value=0.0, max_value=50.0)
    batch_size = forms.IntegerField(initial=4, min_value=1, max_value=256)
    category_tokens = forms.NullBooleanField(initial=True)
    project = forms.CharField(required=False, help_text="Annotation project to queue results in.")
    style_reference = forms.CharField(
        required=False,
        max_length=500,
        help_text="Stored image whose style to follow (IP-Adapter; the model must have one): "
        "a name under style_references/ (POST /api/generation/style-references/), creatives/ "
        "or products/.",
    )
    style_reference_upload = forms.ImageField(
        required=False, help_text="Or upload the style reference image."
    )
    style_scale = forms.FloatField(
        required=False,  # blank: the initial value (DefaultsForm)
        initial=0.5,
        min_value=0.0,
        max_value=2.0,
        help_text="IP-Adapter scale: how strongly the reference's style weighs against the text.",
    )

    def clean_model(self):
        return clean_model_name(self.cleaned_data.get("model"))

    def clean_seeds(self):
        return ",".join(map(str, parse_seeds(self.cleaned_data.get("seeds") or "0,1,2")))

    def clean_prompts(self):
        value = self.cleaned_data.get("prompts")
        if value in (None, "", []):
            return None
        try:
            parse_templates(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
        return value

    def clean_project(self):
        slug = (self.cleaned_data.get("project") or "").strip()
        if slug and not plugins.get("project_exists")(slug):
            raise ValidationError(f"No project {slug!r}.")
        return slug

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        skus = parse_skus(cleaned.get("skus"))
        try:
            products = selectors.select_products(
                skus=skus,
                category=cleaned.get("category") or "",
                all_products=bool(cleaned.get("all_products")),
            )
        except ValidationError as exc:
            raise ValidationError({"skus": exc.messages}) from None
        if not products.exists():
            raise ValidationError({"category": "No products match."})
        cleaned["skus"] = ",".join(skus)
        self._clean_style_reference(cleaned)
        return cleaned

    def _clean_style_reference(self, cleaned: dict) -> None:
        """Check the model can follow a style, then (last, so a refused form writes nothing)
        store an upload and keep only its storage name: job params are JSON."""
        from generation import services

        upload = cleaned.pop("style_reference_upload", None)
        name = (cleaned.get("style_reference") or "").strip()
        if self.data.get(self.add_prefix("style_reference_upload")) and upload is None:
            message = (
                "Upload the file (multipart); through the API, store it with "
                "POST /api/generation/style-references/ and give its name as style_reference."
            )
            raise ValidationError({"style_reference_upload": message})
        if upload is not None and name:
            raise ValidationError(
                {"style_reference": "Give a stored style reference or upload one, not both."}
            )
        if upload is None and not name:
            cleaned["style_reference"] = ""
            return
        model = selectors.resolve_diffusion_model(cleaned["model"])
        problem = selectors.style_reference_error(model)
        if problem:
            raise ValidationError({"style_reference": problem})
        field = "style_reference_upload" if upload is not None else "style_reference"
        try:
            if upload is not None:
                upload.seek(0)
                ref, _ = services.store_style_reference(data=upload.read())
            else:
                ref = selectors.style_reference(name)
        except ValidationError as exc:
            raise ValidationError({field: exc.messages}) from None
        cleaned["style_reference"] = ref.name


class TrainDiffuserForm(DefaultsForm):
    dataset = forms.CharField(help_text="Dataset version whose creatives to learn from.")
    label = forms.CharField(initial="available", help_text="Consensus label to train on.")
    preset = forms.ChoiceField(choices=[(k, k) for k in PRESETS if k != "sd15"], initial="tiny")
    base = forms.CharField(
        required=False, help_text="Fine-tune this registered model instead (e.g. SD-1.5)."
    )
    steps = forms.IntegerField(initial=1500, min_value=1, max_value=10_000_000)
    batch_size = forms.IntegerField(initial=16, min_value=1, max_value=4096)
    lr = forms.FloatField(initial=1e-3, min_value=0.0, max_value=1.0)
    lora_rank = forms.IntegerField(
        initial=0,
        min_value=0,
        max_value=1024,
        help_text="UNet LoRA rank when fine-tuning a base (0 = full).",
    )
    max_minutes = forms.FloatField(initial=0, min_value=0, help_text="0 = no time limit.")
    seed = forms.IntegerField(initial=0, min_value=0)
    name = forms.CharField(required=False, help_text="Registry name (default: generated).")

    def clean_dataset(self):
        value = (self.cleaned_data.get("dataset") or "").strip()
        if not plugins.get("dataset_exists")(value):
            raise ValidationError(f"No dataset version named {value!r}.")
        return value

    def clean_base(self):
        value = (self.cleaned_data.get("base") or "").strip()
        return clean_model_name(value) if value else ""
