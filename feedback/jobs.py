"""RFNet job kinds: rfnet_train, rfnet_evaluate, rfnet_score (registered in FeedbackConfig.ready).

Each run(ctx) is resumable: training checkpoints into ctx.work_dir (feedback.ml.training resumes
from there), a retried training job finds the model it already registered, and scoring keeps a
cursor file in ctx.work_dir and skips creatives the model already scored."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from generation.models import Creative

from . import services
from .forms import EvaluateParamsForm, ScoreParamsForm, TrainParamsForm
from .models import CreativeScore, FeedbackModel
from .selectors import resolve_dataset, resolve_model

log = logging.getLogger(__name__)

TRAIN = "rfnet_train"
EVALUATE = "rfnet_evaluate"
SCORE = "rfnet_score"


def schema_class_names(schema) -> list[str]:
    return list(schema.classes.order_by("order", "id").values_list("slug", flat=True))


def train_config_from_params(params: dict, *, device: str, n_train: int):
    """Map job params onto feedback.ml.training.TrainConfig; the one place the job's defaults
    for an empty epoch count and patience are resolved (from the training set's size)."""
    from django.conf import settings

    from .ml.training import TrainConfig, auto_epochs, auto_patience

    balance = params.get("balance") or "class_weights"
    augment = params.get("augment", True)
    epochs = params.get("epochs") or auto_epochs(n_train, params["batch_size"])
    patience = params.get("patience")
    return TrainConfig(
        epochs=epochs,
        batch_size=params["batch_size"],
        lr=params["lr"],
        schedule=params["schedule"],
        class_weighting="inverse" if balance == "class_weights" else "none",
        balanced_sampling=balance == "sampler",
        hflip=bool(augment),
        translate=0.05 if augment else 0.0,
        colour_permute=0.5 if augment else 0.0,
        seed=params["seed"],
        mixed_precision="auto" if params.get("mixed_precision", True) else "no",
        early_stopping_patience=(auto_patience(epochs) if patience is None else patience or None),
        lr_pretrained=params.get("lr_pretrained") or None,
        # Decoded images are cached by content hash, shared by every job on this host.
        cache_dir=str(settings.RFSTUDIO_CACHE_DIR / "rfnet"),
        device=device,
    )


def run_train(ctx) -> dict:
    # torch loads only in the worker that runs a job, not in every process that imports this.
    from .evaluation import evaluate_rows
    from .ml import training
    from .ml.presets import preset
    from .ml.scoring import Scorer
    from .samples import check_missing, dataset_rows, row_samples_counted

    params = ctx.params
    existing = FeedbackModel.objects.filter(job=ctx.job).first()
    if existing is not None:  # registered by an attempt that died right after
        return {"model": existing.name, "resumed": True}
    version = resolve_dataset(params["dataset"])
    schema = version.project.schema
    class_names = schema_class_names(schema)
    splits = {}
    missing = total = 0
    for split in ("train", "val", "test"):
        rows = dataset_rows(version, [split])
        kept, samples, absent = row_samples_counted(rows, class_names)
        splits[split] = (kept, samples)
        missing += absent
        total += len(rows)
        ctx.reporter.log(
            f"{split}: {len(samples)} samples ({absent} missing files, "
            f"{len(rows) - len(samples) - absent} with labels outside the model's classes)"
        )
    check_missing(missing=missing, total=total, what="dataset rows")
    if not splits["train"][1]:
        raise ValueError(f"Dataset version {version.name} has no usable training items.")
    # Calibration and checkpoint selection need held-out data and must never see `test`:
    # without a val split, an explicit share of train's product families is carved out.
    val_source = "val"
    train_samples, val = splits["train"][1], splits["val"][1]
    if not val:
        train_samples, val = carve_out_val(train_samples, seed=params["seed"])
        val_source = "carved_from_train"
        ctx.reporter.log(
            f"No val split: {len(val)} training items ({len({s.group for s in val})} product "
            "families) held out for checkpoint selection and calibration."
        )
    test_rows, test = splits["test"]
    eval_split = "test"
    if not test:
        eval_split = val_source
        test_rows = [r for r in splits["val"][0]] if splits["val"][1] else []
        ctx.reporter.log("No test split: the figures below are on held-out val items.")

    overrides = model_overrides(params, class_names)
    model_config = preset(params["preset"], len(class_names), **overrides)
    train_config = train_config_from_params(params, device=ctx.device, n_train=len(train_samples))
    if not params.get("epochs"):
        ctx.reporter.log(
            f"epochs: {train_config.epochs} ({training.MIN_TRAIN_STEPS} optimizer steps at least)"
        )
    result = training.train(
        model_config=model_config,
        train_config=train_config,
        train=train_samples,
        val=val,
        test=test or None,
        out_dir=Path(ctx.work_dir) / "train",
        reporter=ctx.reporter,
        resume=True,
    )
    ctx.reporter.progress(0, None, phase="final evaluation")
    scorer = Scorer.from_pretrained(result.best_dir, device=ctx.device)
    if test_rows:
        metrics = evaluate_rows(scorer, test_rows, class_names, batch_size=params["batch_size"])
    else:  # carved-out val: report the training loop's figures on it
        metrics = dict(_plain(result.metrics.get("val") or {}))
    metrics["split"] = eval_split
    metrics["dataset"] = version.name
    training_metrics = _plain({k: v for k, v in result.metrics.items() if k != "history"})
    if training_metrics.get("calibration"):
        training_metrics["calibration"]["val_source"] = val_source
    metrics["training"] = training_metrics
    metrics["history"] = _plain(result.history)
    metrics["sizes"] = {
        "train": len(train_samples),
        "val": len(val),
        "test": len(test),
        "missing_files": missing,
    }
    metrics["val_source"] = val_source
    model = services.register_model(
        name_prefix=f"rfnet-{params['preset'].replace('_', '-')}-{version.name}",
        schema=schema,
        class_names=class_names,
        source_dir=Path(result.best_dir),
        config={
            "preset": params["preset"],
            "model": _plain(model_config.to_dict()),
            "train": _plain(dataclasses.asdict(train_config)),
            "params": dict(ctx.job.params or {}),
        },
        metrics=metrics,
        dataset_version=version,
        job=ctx.job,
        created_by=ctx.job.requested_by,
    )
    ctx.reporter.log(f"Registered {model.name}: accuracy {metrics.get('accuracy')}")
    return {
        "model": model.name,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
    }


def carve_out_val(samples, *, seed: int = 0, share: float = 0.1):
    """(train, val): about `share` of the product families (Sample.group) move to val, at least
    one; at least one family stays in train. Raises ValueError with fewer than two families."""
    import random

    groups = sorted({s.group or s.creative_path for s in samples})
    if len(groups) < 2:
        raise ValueError(
            "The dataset version has no val split and its training items come from a single "
            "product family, so none can be held out for calibration. Create the version with "
            "a val ratio > 0."
        )
    random.Random(seed).shuffle(groups)
    k = min(len(groups) - 1, max(1, round(share * len(groups))))
    held = set(groups[:k])
    train = [s for s in samples if (s.group or s.creative_path) not in held]
    val = [s for s in samples if (s.group or s.creative_path) in held]
    return train, val


def model_overrides(params: dict, class_names: list[str]) -> dict:
    """RFNetConfig overrides from job params: backbone / text encoder / depth folders, freezing."""
    from .ml.config import BackboneConfig

    overrides: dict = {"class_names": class_names}
    backbone = (params.get("backbone") or "").strip()
    if backbone:
        overrides["image_backbone"] = BackboneConfig(kind="pretrained", path=backbone)
        overrides["condition_backbone"] = BackboneConfig(kind="pretrained", path=backbone)
    text_encoder = (params.get("text_encoder") or "").strip()
    if text_encoder:
        overrides["text_encoder"] = text_encoder
        overrides["text_config"] = None  # resolved from the folder
    depth = (params.get("depth_model") or "").strip()
    if depth:
        overrides["depth_model_path"] = depth
    if params.get("freeze_text_encoder"):
        overrides["freeze_text_encoder"] = True
    if params.get("freeze_backbones"):
        overrides["freeze_pretrained_backbones"] = True
    return overrides


def run_evaluate(ctx) -> dict:
    from .evaluation import evaluate_version
    from .ml.scoring import Scorer

    params = ctx.params
    model = resolve_model(params["model"])
    version = resolve_dataset(params["dataset"])
    ctx.reporter.progress(0, None, phase=f"evaluating on {version.name} ({params['split']})")
    scorer = Scorer.from_pretrained(model.checkpoint_path, device=ctx.device)
    metrics = evaluate_version(scorer, version, model.class_names, split=params["split"])
    services.record_evaluation(
        model=model, dataset_version=version, split=params["split"], metrics=metrics, job=ctx.job
    )
    return {
        "model": model.name,
        "dataset": version.name,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
    }


def run_score(ctx) -> dict:
    from annotation.models import Project

    from .ml.scoring import Scorer
    from .samples import check_missing, creative_samples

    params = ctx.params
    model = resolve_model(params["model"])
    project = Project.objects.filter(slug=params["project"]).first() if params["project"] else None
    batch_size = int(params["batch_size"])
    cursor_file = Path(ctx.work_dir) / "cursor.json"
    last_id = done = scored = missing = 0
    if cursor_file.exists():
        # The counts travel with the cursor: a retried run still knows what was missing.
        cursor = json.loads(cursor_file.read_text())
        last_id = int(cursor.get("last_id", 0))
        done, scored, missing = (int(cursor.get(k, 0)) for k in ("done", "scored", "missing"))
        ctx.reporter.log(f"Resuming after creative {last_id}.")
    creatives = Creative.objects.all()
    if project is not None:
        creatives = creatives.filter(items__project=project)
    if not params.get("rescore"):
        creatives = creatives.exclude(
            id__in=CreativeScore.objects.filter(model=model).values("creative_id")
        )
    pending = creatives.filter(id__gt=last_id).order_by("id")
    total = pending.count() + done
    ctx.reporter.progress(done, total, phase=f"scoring with {model.name}")
    scorer = Scorer.from_pretrained(model.checkpoint_path, device=ctx.device)
    while True:
        chunk = list(pending.filter(id__gt=last_id).select_related("product")[: batch_size * 4])
        if not chunk:
            break
        ids, samples, absent = creative_samples(chunk)
        if samples:
            probs = scorer.score(samples, batch_size=batch_size)
            scored += services.store_scores(model=model, creative_ids=ids, probs=probs)
        missing += len(absent)
        last_id = chunk[-1].pk
        done += len(chunk)
        cursor = {"last_id": last_id, "done": done, "scored": scored, "missing": missing}
        cursor_file.write_text(json.dumps(cursor))  # after the rows are stored
        ctx.reporter.progress(done, total, phase=f"scoring with {model.name}")
    if missing:
        ctx.reporter.log(f"{missing} creatives skipped: image file missing.")
    # A scoring run that could not read its inputs must not look like a success.
    check_missing(missing=missing, total=done, what="creatives")
    updated = _refresh_priorities(model, project)
    return {"model": model.name, "scored": scored, "missing": missing, "priorities": updated}


def _refresh_priorities(model: FeedbackModel, project) -> int:
    from annotation.models import Project

    if model.status != FeedbackModel.Status.ACTIVE:
        return 0
    projects = (
        [project]
        if project is not None
        else Project.objects.filter(
            schema_id=model.schema_id, ordering=Project.Ordering.UNCERTAINTY, archived=False
        )
    )
    return sum(services.apply_uncertainty_priorities(project=p) for p in projects)


def _plain(value):
    return json.loads(json.dumps(value, default=_default))


def _default(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


# Lineage recorded on the Job at enqueue (jobs.kinds.JobKind.lineage): what each kind reads.
def _train_lineage(params: dict):
    version = resolve_dataset(params["dataset"])
    inputs = {"dataset_version": version.name, "project": version.project.slug}
    if params.get("backbone"):
        inputs["base_model"] = params["backbone"]
    if params.get("text_encoder"):
        inputs["text_encoder"] = params["text_encoder"]
    if params.get("depth_model"):
        inputs["depth_model"] = params["depth_model"]
    return inputs, version


def _evaluate_lineage(params: dict):
    model = resolve_model(params["model"])
    return {"model": model.name, "dataset_version": params["dataset"]}, model


def _score_lineage(params: dict):
    model = resolve_model(params["model"])
    inputs = {"model": model.name}
    if params.get("project"):
        inputs["project"] = params["project"]
    return inputs, model


def register_kinds() -> None:
    from jobs.kinds import JobKind, register

    register(
        JobKind(
            name=TRAIN,
            queue="gpu",
            run=run_train,
            params_form=TrainParamsForm,
            label="Train RFNet",
            description="Train an RFNet on a dataset version and register it as a candidate.",
            resumable=True,
            max_attempts=3,
            lineage=_train_lineage,
        )
    )
    register(
        JobKind(
            name=EVALUATE,
            queue="gpu",
            run=run_evaluate,
            params_form=EvaluateParamsForm,
            label="Evaluate RFNet",
            description="Evaluate a registered model on a dataset version.",
            max_attempts=1,  # deterministic: a retry would fail the same way
            lineage=_evaluate_lineage,
        )
    )
    register(
        JobKind(
            name=SCORE,
            queue="gpu",
            run=run_score,
            params_form=ScoreParamsForm,
            label="Score creatives",
            description="Store RFNet's class probabilities for creatives (batched, resumable).",
            resumable=True,
            max_attempts=3,
            lineage=_score_lineage,
        )
    )
