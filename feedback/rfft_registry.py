"""RFFT's view of generation's diffusion-model registry: resolve a name, load a pipeline, register
a fine-tuned ControlNet as a new entry with its lineage. Everything RFFT needs to know about
`generation.DiffusionModel` lives here (one place to adapt if the registry changes)."""

from __future__ import annotations

from pathlib import Path


class DiffuserNotFound(ValueError):
    pass


def _model():
    from generation.models import DiffusionModel

    return DiffusionModel


def resolve_diffuser(name: str):
    """A registered diffusion model by name, or `latest` (contract 2: the registry's selector)."""
    from django.core.exceptions import ValidationError

    from generation import selectors

    try:
        return selectors.resolve_diffusion_model(name)
    except ValidationError as exc:
        raise DiffuserNotFound(" ".join(exc.messages)) from exc


def base_of(name: str) -> str | None:
    model = _model().objects.filter(name=name).select_related("parent").first()
    return model.parent.name if model is not None and model.parent_id else None


def load_pipeline(model, *, device: str | None = None):
    """(generation.ml.pipeline.InpaintPipeline, its Components) of a registered model."""
    from generation.ml.pipeline import InpaintPipeline

    pipe = InpaintPipeline.from_pretrained(
        model.pipeline_path,
        controlnet=model.controlnet_full_path,
        lora=model.lora_full_path,
        device=device,
    )
    return pipe


def register_finetuned(
    *,
    base,
    controlnet_dir: Path,
    lora_dir: Path | None,
    reward_model,
    job,
    params: dict,
    metrics: dict,
    name: str | None,
):
    """A new registry entry: the base's pipeline folder + the fine-tuned ControlNet folder."""
    from generation import services

    return services.register_finetuned_model(
        base=base,
        controlnet_dir=controlnet_dir,
        name=name or None,
        reward_model_name=reward_model.name,
        job=job,
        params=params,
        metrics=metrics,
        created_by=job.requested_by if job is not None else None,
    )


def reward_name_of(model) -> str:
    """The RFNet a model was fine-tuned against ('' for a base)."""
    return model.reward_model or ""


def finetuned_by_job(job):
    return _model().objects.filter(job=job).first()
