"""Writes for the diffusion-model registry (services for `DiffusionModel`).

Concurrency: names are unique in the database; a registration that loses a race on the name
gets a ValidationError, never a second row. One entry per job (a constraint): a retried job
finds the entry it registered. Folders a job registers are copied beside their final place and
renamed into place before the row is committed, so an entry never names a partial folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from generation.models import DiffusionModel
from jobs.files import staged_copy

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def folder_checksum(*paths: str | os.PathLike | None) -> str:
    """sha256 over (relative path, file sha256) of every file of the given folders/files."""
    outer = hashlib.sha256()
    for root in paths:
        if not root:
            continue
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
            rel = f.relative_to(root).as_posix() if root.is_dir() else f.name
            outer.update(f"{rel}\0{h.hexdigest()}\n".encode())
    return outer.hexdigest()


def validate_folders(
    *, path, controlnet_path=None, lora_path=None, image_encoder_path=None, ip_adapter_path=None
):
    """Load everything offline (local_files_only=True); the config summary, or ValidationError
    naming the part that failed. An IP-Adapter is attached to the loaded UNet (diffusers'
    loader) and fed one image through its encoder, so a file made for another UNet or encoder
    is refused here, not in a job."""
    from generation.ml.pipeline import (
        InpaintPipeline,
        PipelineLoadError,
        load_components,
        num_parameters,
    )

    for what, value in (("controlnet", controlnet_path), ("lora", lora_path),
                        ("image encoder", image_encoder_path),
                        ("IP-Adapter", ip_adapter_path)):  # fmt: skip
        if value and not Path(value).exists():
            raise ValidationError(f"{what} path {value} does not exist.")
    if bool(ip_adapter_path) != bool(image_encoder_path):
        raise ValidationError(
            "A style reference needs both the IP-Adapter weights (--ip-adapter) and its image "
            "encoder folder (--image-encoder)."
        )
    try:
        comps = load_components(path, controlnet=controlnet_path, lora=lora_path)
    except PipelineLoadError as exc:
        raise ValidationError(f"Not a loadable diffusion pipeline ({path}): {exc}") from exc
    if comps.controlnet is None:
        raise ValidationError(
            f"{path} has no controlnet/ folder: give the Canny ControlNet with --controlnet."
        )
    style = None
    if ip_adapter_path:
        pipe = InpaintPipeline(comps)
        try:
            pipe.load_ip_adapter(ip_adapter_path, image_encoder_path)
        except PipelineLoadError as exc:
            raise ValidationError(f"Not a usable IP-Adapter ({ip_adapter_path}): {exc}") from exc
        enc, proj = pipe.style.image_encoder, pipe.ip_adapter_projection
        style = {
            "image_encoder": type(enc).__name__,
            "image_size": int(enc.config.image_size),
            "projection": type(proj.image_projection_layers[0]).__name__,
            "parameters": num_parameters(enc) + num_parameters(proj),
        }
    return {
        "native_size": comps.config.size if comps.config else None,
        "prediction_type": comps.scheduler.config.prediction_type,
        "latent_channels": int(comps.unet.config.out_channels),
        "codec": type(comps.vae).__name__,
        "parameters": {
            "unet": num_parameters(comps.unet),
            "controlnet": num_parameters(comps.controlnet),
            "text_encoder": num_parameters(comps.text_encoder),
        },
        "preset": comps.config.to_dict() if comps.config else None,
        "style_adapter": style,
    }


def _check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise ValidationError(
            f"Invalid model name {name!r}: letters, digits, '.', '_' and '-' (max 200)."
        )
    if name in ("latest", "active"):
        raise ValidationError(f"{name!r} is reserved (it names a selection, not a model).")


def register_diffusion_model(
    *,
    name: str,
    path: str | os.PathLike,
    controlnet_path: str | os.PathLike | None = None,
    lora_path: str | os.PathLike | None = None,
    image_encoder_path: str | os.PathLike | None = None,
    ip_adapter_path: str | os.PathLike | None = None,
    parent: DiffusionModel | None = None,
    reward_model: str = "",
    job=None,
    lineage: dict | None = None,
    metrics: dict | None = None,
    created_by=None,
) -> DiffusionModel:
    """Validate the folders (offline load), checksum them, create the entry."""
    _check_name(name)
    if DiffusionModel.objects.filter(name=name).exists():
        raise ValidationError(f"A diffusion model named {name!r} already exists.")
    paths = [str(p) if p else "" for p in (path, controlnet_path, lora_path, image_encoder_path,
                                            ip_adapter_path)]  # fmt: skip
    config = validate_folders(
        path=paths[0],
        controlnet_path=paths[1] or None,
        lora_path=paths[2] or None,
        image_encoder_path=paths[3] or None,
        ip_adapter_path=paths[4] or None,
    )
    # Every part that changes an output is in the checksum (an entry without a style adapter
    # keeps the checksum it had before adapters were registrable).
    checksum = folder_checksum(*[p for p in paths if p])
    try:
        with transaction.atomic():
            return DiffusionModel.objects.create(
                name=name,
                path=_stored(paths[0]),
                controlnet_path=_stored(paths[1]),
                lora_path=_stored(paths[2]),
                image_encoder_path=_stored(paths[3]),
                ip_adapter_path=_stored(paths[4]),
                checksum=checksum,
                config=config,
                metrics=metrics or {},
                parent=parent,
                reward_model=reward_model,
                job=job,
                lineage=lineage or {},
                created_by=created_by,
            )
    except IntegrityError as exc:
        raise ValidationError(f"A diffusion model named {name!r} already exists.") from exc


def _stored(path: str) -> str:
    """Paths under RFSTUDIO_MODELS_DIR are stored relative to it (movable), others absolute."""
    if not path:
        return ""
    p = Path(path).resolve()
    root = Path(settings.RFSTUDIO_MODELS_DIR).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _unique_name(prefix: str) -> str:
    n = DiffusionModel.objects.filter(name__startswith=f"{prefix}-").count() + 1
    while DiffusionModel.objects.filter(name=f"{prefix}-{n}").exists():
        n += 1
    return f"{prefix}-{n}"


def _install(source: Path, name: str) -> Path:
    """Copy a finished folder to RFSTUDIO_MODELS_DIR/diffusion/<name> (staged, then renamed)."""
    root = Path(settings.RFSTUDIO_MODELS_DIR) / "diffusion"
    root.mkdir(parents=True, exist_ok=True)
    target = root / name
    if target.exists():
        raise ValidationError(f"Model folder {target} already exists.")
    with staged_copy(source, root) as staging:
        os.replace(staging, target)
    return target


def register_trained_model(
    *,
    source_dir: str | os.PathLike,
    name: str | None,
    name_prefix: str,
    job=None,
    parent: DiffusionModel | None = None,
    reward_model: str = "",
    lineage: dict | None = None,
    metrics: dict | None = None,
    created_by=None,
) -> DiffusionModel:
    """Install a job's finished pipeline folder under the models dir and register it."""
    if job is not None:
        existing = DiffusionModel.objects.filter(job=job).first()
        if existing is not None:
            return existing
    name = name or _unique_name(name_prefix)
    _check_name(name)
    if DiffusionModel.objects.filter(name=name).exists():
        raise ValidationError(f"A diffusion model named {name!r} already exists.")
    target = _install(Path(source_dir), name)
    try:
        return register_diffusion_model(
            name=name, path=target, parent=parent, reward_model=reward_model, job=job,
            lineage=lineage, metrics=metrics, created_by=created_by,
        )  # fmt: skip
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise


def register_finetuned_model(
    *,
    base: DiffusionModel,
    controlnet_dir: str | os.PathLike,
    name: str | None,
    reward_model_name: str,
    job,
    params: dict,
    metrics: dict,
    created_by=None,
) -> DiffusionModel:
    """A new entry: the base's pipeline (and LoRA) + a fine-tuned ControlNet folder, installed
    under the models dir; lineage = base, reward model, job, params."""
    if job is not None:
        existing = DiffusionModel.objects.filter(job=job).first()
        if existing is not None:
            return existing
    name = name or _unique_name(f"{base.name}-ft")
    _check_name(name)
    if DiffusionModel.objects.filter(name=name).exists():
        raise ValidationError(f"A diffusion model named {name!r} already exists.")
    target = _install(Path(controlnet_dir), f"{name}-controlnet")
    try:
        return register_diffusion_model(
            name=name,
            path=base.pipeline_path,
            controlnet_path=target,
            lora_path=base.lora_full_path,
            image_encoder_path=base.image_encoder_full_path,
            ip_adapter_path=base.ip_adapter_full_path,
            parent=base,
            reward_model=reward_model_name,
            job=job,
            lineage={
                "base": base.name,
                "base_checksum": base.checksum,
                "reward_model": reward_model_name,
                "params": params,
            },  # fmt: skip
            metrics=json.loads(json.dumps(metrics, default=str)),
            created_by=created_by,
        )
    except Exception:
        shutil.rmtree(target, ignore_errors=True)
        raise


def set_status(*, model: DiffusionModel, status: str) -> DiffusionModel:
    if status not in DiffusionModel.Status.values:
        raise ValidationError(f"Unknown status {status!r}.")
    DiffusionModel.objects.filter(pk=model.pk).update(status=status)
    model.status = status
    return model
