"""Parameter forms of the RFNet job kinds (validated at enqueue and re-cleaned by the runner).

Datasets, models and projects are named by their unique name/slug, so job params stay readable
and "active"/"latest" are resolved to a concrete model name once, at enqueue time."""

from __future__ import annotations

from django import forms

from annotation.models import DatasetVersion, Project

from .ml.presets import PRESETS
from .selectors import ModelNotFound, resolve_model


class DefaultsForm(forms.Form):
    """Missing optional values take the field's initial value (the CLI and API send only what
    they change; a NullBooleanField left empty means "default", not False)."""

    def clean(self):
        cleaned = super().clean()
        for name, field in self.fields.items():
            if cleaned.get(name) in (None, "") and field.initial is not None:
                cleaned[name] = field.initial
        return cleaned


def _clean_dataset(value: str) -> str:
    value = (value or "").strip()
    if not DatasetVersion.objects.filter(name=value).exists():
        raise forms.ValidationError(f"No dataset version named {value!r}.")
    return value


def _clean_model(value: str) -> str:
    try:
        return resolve_model(value or "active").name
    except ModelNotFound as exc:
        raise forms.ValidationError(str(exc))


class TrainParamsForm(DefaultsForm):
    dataset = forms.CharField(max_length=100, help_text="Dataset version name.")
    preset = forms.ChoiceField(
        choices=[(name, name) for name in PRESETS], initial="small", required=False
    )
    backbone = forms.CharField(
        required=False,
        initial="",
        help_text="Optional local folder of a pretrained transformers vision model.",
    )
    text_encoder = forms.CharField(
        required=False,
        initial="",
        help_text="Optional local folder of a transformers text encoder + tokenizer (e.g. "
        "RoBERTa); empty: the preset's tiny encoder.",
    )
    depth_model = forms.CharField(
        required=False,
        initial="",
        help_text="Optional local folder of a transformers depth model (adds the depth maps).",
    )
    freeze_text_encoder = forms.NullBooleanField(initial=False, required=False)
    freeze_backbones = forms.NullBooleanField(
        initial=False, required=False, help_text="Freeze pretrained vision backbones."
    )
    lr_pretrained = forms.FloatField(
        min_value=0.0,
        max_value=1.0,
        initial=1e-4,
        required=False,
        help_text="Learning rate of pretrained parts (backbone / text encoder folders).",
    )
    epochs = forms.IntegerField(
        min_value=1,
        max_value=1000,
        required=False,
        help_text="Empty: enough epochs for 2,000 optimizer steps (10 to 100; 10 for large "
        "datasets); early stopping may end sooner.",
    )
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=32, required=False)
    lr = forms.FloatField(min_value=1e-7, max_value=1.0, initial=1e-3, required=False)
    schedule = forms.ChoiceField(
        choices=[("cosine", "cosine"), ("constant", "constant"), ("step", "step")],
        initial="cosine",
        required=False,
    )
    balance = forms.ChoiceField(
        choices=[
            ("class_weights", "Class-weighted loss"),
            ("sampler", "Balanced sampling"),
            ("none", "None"),
        ],
        initial="class_weights",
        required=False,
        help_text="How to counter class imbalance.",
    )
    augment = forms.NullBooleanField(initial=True, required=False)
    seed = forms.IntegerField(min_value=0, initial=0, required=False)
    mixed_precision = forms.NullBooleanField(
        initial=True, required=False, help_text="bf16/fp16 autocast on GPU (ignored on CPU)."
    )
    patience = forms.IntegerField(
        min_value=0,
        required=False,
        help_text="Early stopping (epochs without a val macro-F1 gain); 0 disables it. Empty: "
        "a third of the epochs, at least 5, so a long schedule is not cut while its rate is high.",
    )

    def clean_dataset(self):
        return _clean_dataset(self.cleaned_data.get("dataset"))

    def _clean_folder(self, name: str) -> str:
        from pathlib import Path

        value = (self.cleaned_data.get(name) or "").strip()
        if value and not Path(value).is_dir():
            raise forms.ValidationError(f"Folder {value!r} does not exist on this host.")
        return value

    def clean_backbone(self):
        return self._clean_folder("backbone")

    def clean_text_encoder(self):
        return self._clean_folder("text_encoder")

    def clean_depth_model(self):
        return self._clean_folder("depth_model")


class EvaluateParamsForm(DefaultsForm):
    model = forms.CharField(max_length=150, help_text="Model name, latest or active.")
    dataset = forms.CharField(max_length=100, help_text="Dataset version name.")
    split = forms.ChoiceField(
        choices=[("test", "test"), ("all", "all")], initial="test", required=False
    )

    def clean_model(self):
        return _clean_model(self.cleaned_data.get("model"))

    def clean_dataset(self):
        return _clean_dataset(self.cleaned_data.get("dataset"))


class ScoreParamsForm(DefaultsForm):
    model = forms.CharField(
        max_length=150, required=False, initial="active", help_text="Model name, latest or active."
    )
    project = forms.CharField(
        max_length=100, required=False, initial="", help_text="Project slug (empty: all creatives)."
    )
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=64, required=False)
    rescore = forms.NullBooleanField(
        initial=False, required=False, help_text="Score again creatives this model already scored."
    )

    def clean_model(self):
        return _clean_model(self.cleaned_data.get("model"))

    def clean_project(self):
        slug = (self.cleaned_data.get("project") or "").strip()
        if slug and not Project.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"No project with slug {slug!r}.")
        return slug
