"""Parameter forms of the `rfft` and `evaluate_generator` job kinds.

Model names are resolved once, at enqueue (`latest`/`active` become concrete names), so a job's
params say exactly which models it used."""

from __future__ import annotations

from django import forms

from generation.models import Product

from . import rfft_registry
from .forms import DefaultsForm, _clean_model


def _clean_diffuser(value: str) -> str:
    try:
        return rfft_registry.resolve_diffuser(value or "latest").name
    except rfft_registry.DiffuserNotFound as exc:
        raise forms.ValidationError(str(exc))


def _clean_skus(value: str, *, required: bool) -> list[str]:
    skus = [s.strip() for s in (value or "").replace("\n", ",").split(",") if s.strip()]
    if not skus:
        if required:
            raise forms.ValidationError("Name at least one product SKU.")
        return []
    found = set(Product.objects.filter(sku__in=skus).values_list("sku", flat=True))
    missing = [s for s in skus if s not in found]
    if missing:
        raise forms.ValidationError(f"Unknown product SKU(s): {', '.join(missing[:10])}.")
    return list(dict.fromkeys(skus))


class RFFTParamsForm(DefaultsForm):
    base = forms.CharField(
        max_length=200, initial="latest", help_text="Diffusion model name, or 'latest'."
    )
    reward = forms.CharField(
        max_length=200,
        initial="active",
        required=False,
        help_text="RFNet model name, or 'active' / 'latest'.",
    )
    method = forms.ChoiceField(
        choices=[
            ("rfft", "RFFT (reward + β·consistent condition)"),
            ("refl", "ReFL (reward only)"),
        ],
        initial="rfft",
        required=False,
    )
    beta = forms.FloatField(min_value=0.0, max_value=1e4, initial=0.1, required=False)
    steps = forms.IntegerField(min_value=1, max_value=1_000_000, initial=200, required=False)
    lora_rank = forms.IntegerField(
        min_value=0,
        max_value=512,
        initial=0,
        required=False,
        help_text="0 = train the whole ControlNet; r > 0 = a LoRA of rank r.",
    )
    products = forms.CharField(
        required=False,
        initial="",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Training SKUs, comma-separated (blank = every product).",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=4, required=False)
    gradient_accumulation_steps = forms.IntegerField(
        min_value=1, max_value=256, initial=1, required=False
    )
    lr = forms.FloatField(min_value=1e-9, max_value=1.0, initial=1e-5, required=False)
    num_inference_steps = forms.IntegerField(
        min_value=1, max_value=1000, initial=40, required=False
    )
    last_k = forms.IntegerField(min_value=1, max_value=1000, initial=10, required=False)
    guidance_scale = forms.FloatField(min_value=1.0, max_value=50.0, initial=7.5, required=False)
    # NullBoolean: an API/CLI call that leaves it out means "default" (on), not False.
    gradient_checkpointing = forms.NullBooleanField(initial=True, required=False)
    checkpoint_every = forms.IntegerField(
        min_value=1, max_value=100_000, initial=25, required=False
    )
    seed = forms.IntegerField(min_value=0, initial=0, required=False)
    name = forms.SlugField(
        max_length=200, required=False, initial="", help_text="Name of the result (blank: derived)."
    )

    def clean_base(self):
        return _clean_diffuser(self.cleaned_data.get("base"))

    def clean_reward(self):
        return _clean_model(self.cleaned_data.get("reward") or "active")

    def clean_products(self):
        return ",".join(_clean_skus(self.cleaned_data.get("products"), required=False))

    def clean(self):
        cleaned = super().clean()
        n, k = cleaned.get("num_inference_steps"), cleaned.get("last_k")
        if n and k and k > n:
            self.add_error("last_k", f"last_k ({k}) cannot exceed num_inference_steps ({n}).")
        if cleaned.get("method") == "refl":
            cleaned["beta"] = 0.0  # ReFL has no regulariser: stored as such, not as ignored
        return cleaned


class EvaluateGeneratorParamsForm(DefaultsForm):
    model = forms.CharField(max_length=200, help_text="Diffusion model name, or 'latest'.")
    baseline = forms.CharField(
        max_length=200,
        required=False,
        initial="",
        help_text="Diffusion model to compare with (blank: the model's base, when it has one).",
    )
    judge = forms.CharField(
        max_length=200, help_text="An RFNet trained on other data or seeds than the reward."
    )
    reward = forms.CharField(
        max_length=200,
        required=False,
        initial="",
        help_text="Reward RFNet (blank: the one the model was fine-tuned against, else active).",
    )
    products = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Held-out SKUs, comma-separated."
    )
    seeds = forms.IntegerField(min_value=1, max_value=1000, initial=4, required=False)
    steps = forms.IntegerField(min_value=1, max_value=1000, initial=40, required=False)
    guidance_scale = forms.FloatField(min_value=1.0, max_value=50.0, initial=7.5, required=False)
    threshold = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.5, required=False)

    def clean_model(self):
        return _clean_diffuser(self.cleaned_data.get("model"))

    def clean_baseline(self):
        value = (self.cleaned_data.get("baseline") or "").strip()
        return _clean_diffuser(value) if value else ""

    def clean_judge(self):
        return _clean_model(self.cleaned_data.get("judge"))

    def clean_reward(self):
        value = (self.cleaned_data.get("reward") or "").strip()
        return _clean_model(value) if value else ""

    def clean_products(self):
        return ",".join(_clean_skus(self.cleaned_data.get("products"), required=True))

    def clean(self):
        cleaned = super().clean()
        model, baseline = cleaned.get("model"), cleaned.get("baseline")
        if model and not baseline:
            base = rfft_registry.base_of(model)
            if base is None:
                self.add_error("baseline", "The model has no base: name a baseline.")
            else:
                cleaned["baseline"] = base
        if model and cleaned.get("baseline") == model:
            self.add_error("baseline", "The baseline must be another model.")
        if cleaned.get("judge") and cleaned.get("judge") == cleaned.get("reward"):
            self.add_error("judge", "The judge must be independent of the reward RFNet.")
        return cleaned
