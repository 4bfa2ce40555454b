"""Ranking job kinds (registered in RankingConfig.ready):

- `ranking_features` (default queue): creative features per extractor, cached per (creative,
  extractor, version); resumable (creatives done are skipped).
- `train_encoder` (gpu): MoCo v3 contrastive encoder, embeddings of every creative, recall@k on
  held-out products; the Faiss index is built per encoder from the stored embeddings.
- `train_ranker` (gpu): the two-stage list-wise ranker on a time-based split, evaluated against
  the baselines, registered with its metrics.
- `ranking_preview` (gpu): ranked lists of every product for one segment, stored for the page.

The two training kinds run through `accelerate` (jobs.accel), checkpoint into ctx.work_dir
(`<…>-train/last/`, swapped in atomically) and resume there on the next attempt; they are
`distributed` (param num_processes > 1 runs every rank under `accelerate launch`, torchrun on
CPU; rank 0 evaluates and registers).
"""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path

import numpy as np
from django import forms
from django.core.files.storage import default_storage
from PIL import Image

from . import services
from .models import RankingModel, Segment
from .selectors import ModelNotFound, resolve_model

FEATURES = "ranking_features"
TRAIN_ENCODER = "train_encoder"
TRAIN_RANKER = "train_ranker"
PREVIEW = "ranking_preview"


class DefaultsForm(forms.Form):
    """Missing optional values take the field's initial value (CLI/API send what they change)."""

    def clean(self):
        cleaned = super().clean()
        for name, field in self.fields.items():
            if cleaned.get(name) in (None, "") and field.initial is not None:
                cleaned[name] = field.initial
        return cleaned


def _clean_new_name(value: str) -> str:
    value = (value or "").strip()
    if value and RankingModel.objects.filter(name=value).exists():
        raise forms.ValidationError(f"A ranking model named {value!r} already exists.")
    return value


class FeaturesForm(DefaultsForm):
    extractors = forms.CharField(
        initial="visual,ocr",
        required=False,
        help_text="Comma-separated: visual, ocr, vlm, embedding (newest encoder).",
    )
    vlm_path = forms.CharField(
        required=False, initial="", help_text="Local folder of a vision-language model (vlm)."
    )
    batch_size = forms.IntegerField(min_value=1, max_value=1000, initial=64, required=False)

    def clean_extractors(self):
        from .ml.features import EXTRACTORS

        names = [n.strip() for n in (self.cleaned_data["extractors"] or "").split(",") if n.strip()]
        unknown = [n for n in names if n not in (*EXTRACTORS, "vlm", "embedding")]
        if unknown:
            raise forms.ValidationError(f"Unknown extractor(s): {', '.join(unknown)}.")
        return ",".join(names) or "visual,ocr"

    def clean(self):
        cleaned = super().clean()
        if "vlm" in (cleaned.get("extractors") or "").split(","):
            path = (cleaned.get("vlm_path") or "").strip()
            if not path or not Path(path).is_dir():
                self.add_error("vlm_path", "The vlm extractor needs a local model folder.")
        return cleaned


class EncoderForm(DefaultsForm):
    name = forms.SlugField(required=False, initial="", help_text="Default: encoder-<n>.")
    steps = forms.IntegerField(min_value=1, max_value=1_000_000, initial=300, required=False)
    batch_size = forms.IntegerField(min_value=2, max_value=4096, initial=64, required=False)
    image_size = forms.IntegerField(min_value=16, max_value=512, initial=64, required=False)
    lr = forms.FloatField(min_value=1e-6, max_value=1.0, initial=1e-3, required=False)
    heldout = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.2, required=False)
    seed = forms.IntegerField(initial=0, required=False)

    def clean_name(self):
        return _clean_new_name(self.cleaned_data["name"])


class RankerForm(DefaultsForm):
    name = forms.SlugField(help_text="Name of the ranker to register.")
    days = forms.CharField(required=False, initial="", help_text="FROM:TO window of log days.")
    holdout_days = forms.IntegerField(
        min_value=0, initial=0, required=False, help_text="Last days held out (0: a quarter)."
    )
    encoder = forms.CharField(
        initial="latest", required=False, help_text="Encoder for embeddings: latest, none, a name."
    )
    epochs = forms.IntegerField(min_value=1, max_value=1000, initial=30, required=False)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=64, required=False)
    lr = forms.FloatField(min_value=1e-6, max_value=1.0, initial=3e-3, required=False)
    seed = forms.IntegerField(initial=0, required=False)

    def clean_name(self):
        value = _clean_new_name(self.cleaned_data["name"])
        if not value:
            raise forms.ValidationError("A name is required.")
        return value

    def clean_days(self):
        from .data import parse_days

        try:
            parse_days(self.cleaned_data["days"])
        except ValueError as exc:
            raise forms.ValidationError(str(exc))
        return self.cleaned_data["days"]

    def clean_encoder(self):
        value = (self.cleaned_data["encoder"] or "latest").strip()
        if value == "none":
            return value
        try:
            return resolve_model(value, kind=RankingModel.Kind.ENCODER).name
        except ModelNotFound:
            if value == "latest":
                return "none"  # no encoder trained yet: rank without embeddings
            raise forms.ValidationError(f"No encoder named {value!r}.")


class PreviewForm(DefaultsForm):
    segment = forms.CharField(help_text="Segment slug(s), comma-separated.")
    model = forms.CharField(initial="latest", required=False, help_text="latest or a name.")
    category = forms.CharField(required=False, initial="", help_text="Only this category.")

    def clean_segment(self):
        slugs = [s.strip() for s in self.cleaned_data["segment"].split(",") if s.strip()]
        known = set(Segment.objects.filter(slug__in=slugs).values_list("slug", flat=True))
        missing = [s for s in slugs if s not in known]
        if missing or not slugs:
            raise forms.ValidationError(f"Unknown segment(s): {', '.join(missing) or '-'}.")
        return ",".join(slugs)

    def clean_model(self):
        try:
            return resolve_model(self.cleaned_data["model"], kind=RankingModel.Kind.RANKER).name
        except ModelNotFound as exc:
            raise forms.ValidationError(str(exc))


# --- helpers ---------------------------------------------------------------------------------
def _open_image(field_file, size: int | None = None):
    if not field_file or not field_file.name:
        return None
    try:
        with default_storage.open(field_file.name, "rb") as fh:
            img = Image.open(io.BytesIO(fh.read()))
            img.load()
    except (OSError, ValueError):
        return None
    if size:
        img = img.convert("RGB").resize((size, size), Image.BILINEAR)
    return img


def _plain(value):
    import json

    return json.loads(
        json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    )


# --- features --------------------------------------------------------------------------------
def run_features(ctx) -> dict:
    from feedback.samples import placement_of
    from generation.models import Creative

    from .ml.features import EXTRACTORS
    from .models import CreativeFeatures

    params = ctx.params
    out = {}
    for name in params["extractors"].split(","):
        if name == "embedding":
            out[name] = _embed_missing(ctx)
            continue
        if name == "vlm":
            from .ml.vlm import VlmConfig, VlmExtractor

            extractor = VlmExtractor(VlmConfig(path=params["vlm_path"], device=ctx.device))
        else:
            extractor = EXTRACTORS[name]()
        done = CreativeFeatures.objects.filter(extractor=name, version=extractor.version)
        pending = Creative.objects.exclude(id__in=done.values("creative_id")).select_related(
            "product"
        )
        total = pending.count()
        ctx.reporter.progress(0, total, phase=f"{name} features")
        n = errors = 0
        last = 0
        while True:
            chunk = list(pending.filter(id__gt=last).order_by("id")[: params["batch_size"]])
            if not chunk:
                break
            rows = []
            for creative in chunk:
                image = _open_image(creative.image)
                if image is None:
                    rows.append((creative.pk, {}, "image file missing or unreadable"))
                    errors += 1
                    continue
                product = _open_image(creative.product.image)
                try:
                    values = extractor.extract(image, product, placement_of(creative))
                    rows.append((creative.pk, _plain(values), ""))
                except ValueError as exc:
                    rows.append((creative.pk, {}, str(exc)[:2000]))
                    errors += 1
            services.store_features(extractor=name, version=extractor.version, rows=rows)
            n += len(chunk)
            last = chunk[-1].pk
            ctx.reporter.progress(n, total, phase=f"{name} features")
        out[name] = {"computed": n, "errors": errors, "version": extractor.version}
        ctx.reporter.log(f"{name}: {n} creatives ({errors} without features)")
    return out


def _embed_missing(ctx) -> dict:
    """Embed creatives the newest encoder has not seen (imported after it was trained)."""
    from generation.models import Creative

    from .ml.encoder import CreativeEncoder, embed_images
    from .models import CreativeEmbedding

    try:
        encoder = resolve_model("latest", kind=RankingModel.Kind.ENCODER)
    except ModelNotFound:
        ctx.reporter.log("embedding: no encoder trained yet, skipped")
        return {"computed": 0, "skipped": "no encoder"}
    model = CreativeEncoder.from_pretrained(encoder.checkpoint_path, device=ctx.device)
    size = model.config.image_size
    done = CreativeEmbedding.objects.filter(encoder=encoder).values("creative_id")
    pending = Creative.objects.exclude(id__in=done)
    total, n, last = pending.count(), 0, 0
    while True:
        chunk = list(pending.filter(id__gt=last).order_by("id")[: ctx.params["batch_size"]])
        if not chunk:
            break
        ids, images = [], []
        for c in chunk:
            img = _open_image(c.image, size)
            if img is not None:
                ids.append(c.pk)
                images.append(np.asarray(img, np.uint8))
        if images:
            vectors = embed_images(model, np.stack(images), device=ctx.device)
            services.store_embeddings(encoder=encoder, creative_ids=ids, vectors=vectors)
        n += len(chunk)
        last = chunk[-1].pk
        ctx.reporter.progress(n, total, phase=f"embedding with {encoder.name}")
    ctx.reporter.log(f"embedding: {n} creatives with {encoder.name}")
    return {"computed": n, "encoder": encoder.name}


# --- encoder ---------------------------------------------------------------------------------
def run_train_encoder(ctx) -> dict:
    from generation.models import Creative

    from .ml.config import EncoderConfig
    from .ml.encoder import embed_images, recall_at_k, save_index, train_encoder

    params = ctx.params
    existing = RankingModel.objects.filter(job=ctx.job).first()
    if existing is not None:
        return {"encoder": existing.name, "resumed": True}
    size = params["image_size"]
    ids, groups, images = [], [], []
    creatives = Creative.objects.select_related("product").order_by("id")
    total = creatives.count()
    ctx.reporter.progress(0, total, phase="loading creatives")
    for i, c in enumerate(creatives.iterator(chunk_size=500)):
        img = _open_image(c.image, size)
        if img is not None:
            ids.append(c.pk)
            groups.append(c.product.sku)
            images.append(np.asarray(img, np.uint8))
        if i % 200 == 0:
            ctx.reporter.progress(i, total, phase="loading creatives")
    if len(images) < 4:
        raise ValueError("Need at least 4 creatives with images to train an encoder.")
    images = np.stack(images)
    # Held-out products: a seeded share of products never seen in training.
    rng = np.random.default_rng(params["seed"])
    products = sorted(set(groups))
    n_held = int(round(len(products) * params["heldout"]))
    held = set(rng.permutation(products)[:n_held].tolist()) if len(products) > 2 else set()
    train_idx = [i for i, g in enumerate(groups) if g not in held]
    config = EncoderConfig(image_size=size)
    trained = train_encoder(
        images[train_idx],
        [groups[i] for i in train_idx],
        config,
        steps=params["steps"],
        batch_size=params["batch_size"],
        lr=params["lr"],
        seed=params["seed"],
        device=ctx.device,
        reporter=ctx.reporter,
        checkpoint_dir=Path(ctx.work_dir) / "encoder-train",  # a later attempt resumes here
    )
    if not trained.is_main_process:  # under accelerate launch, rank 0 embeds and registers
        return None
    encoder = trained.encoder
    ctx.reporter.progress(0, None, phase="embedding")
    vectors = embed_images(encoder, images, device=ctx.device)
    held_idx = [i for i, g in enumerate(groups) if g in held]
    metrics = {
        "resumed_from_step": trained.resumed_from_step,
        "heldout_products": len(held),
        "train_creatives": len(train_idx),
        "heldout": recall_at_k(vectors[held_idx], [groups[i] for i in held_idx])
        if held_idx
        else {},
        "train": recall_at_k(vectors[train_idx], [groups[i] for i in train_idx]),
    }
    out_dir = Path(ctx.work_dir) / "encoder"
    encoder.save_pretrained(out_dir)
    # The encoder version's Faiss index over the creatives it embedded (ranking.index rebuilds
    # it from stored embeddings once creatives are added).
    save_index(out_dir, vectors, ids)
    name = params["name"] or _next_name("encoder")
    model = services.register_model(
        kind=RankingModel.Kind.ENCODER,
        name=name,
        source_dir=out_dir,
        config={"model": config.to_dict(), "params": dict(ctx.job.params or {})},
        metrics=_plain(metrics),
        job=ctx.job,
        created_by=ctx.job.requested_by,
    )
    services.store_embeddings(encoder=model, creative_ids=ids, vectors=vectors)
    held_recall = metrics["heldout"].get("recall@5")
    ctx.reporter.log(f"Registered {model.name}; held-out recall@5 {held_recall}")
    return {"encoder": model.name, "recall@5_heldout": held_recall, "embedded": len(ids)}


def _next_name(prefix: str) -> str:
    n = RankingModel.objects.filter(name__startswith=f"{prefix}-").count() + 1
    while RankingModel.objects.filter(name=f"{prefix}-{n}").exists():
        n += 1
    return f"{prefix}-{n}"


# --- ranker ----------------------------------------------------------------------------------
def split_days(days: str, holdout_days: int):
    """(train window, test window) by time: the last `holdout_days` days (default a quarter of
    the window's log days, at least one) are held out."""
    from .data import log_days, parse_days

    lo, hi = parse_days(days)
    all_days = log_days(lo, hi)
    if len(all_days) < 2:
        raise ValueError("Need impression logs on at least two days for a time-based split.")
    n_test = holdout_days or max(1, math.ceil(len(all_days) / 4))
    n_test = min(n_test, len(all_days) - 1)
    train, test = all_days[:-n_test], all_days[-n_test:]
    return (train[0], train[-1]), (test[0], test[-1])


def run_train_ranker(ctx) -> dict:
    from .data import (
        aggregate_logs,
        build_lists,
        catalogue,
        feature_names,
        group_by_list,
        segment_features_by_slug,
    )
    from .ml.config import RankerConfig
    from .ml.ranker import CreativeRanker
    from .ml.training import train_ranker
    from .scoring import evaluate

    params = ctx.params
    existing = RankingModel.objects.filter(job=ctx.job).first()
    if existing is not None:
        return {"ranker": existing.name, "resumed": True}
    (tr_lo, tr_hi), (te_lo, te_hi) = split_days(params["days"], params["holdout_days"])
    ctx.reporter.log(f"train {tr_lo}..{tr_hi}, test {te_lo}..{te_hi}")
    train_agg = aggregate_logs(tr_lo, tr_hi)
    test_agg = aggregate_logs(te_lo, te_hi)
    encoder = None
    if params["encoder"] != "none":
        encoder = resolve_model(params["encoder"], kind=RankingModel.Kind.ENCODER)
    cat = catalogue({c for _, c in train_agg}, encoder)
    seg_features = segment_features_by_slug({s for s, _ in train_agg})
    names = feature_names(train_agg, cat, seg_features)
    config = RankerConfig(
        **names,
        embedding_dim=int(encoder.config["model"]["embed_dim"]) if encoder else 0,
        encoder=encoder.name if encoder else "",
    )
    lists = build_lists(group_by_list(train_agg, cat), cat, seg_features, config, agg=train_agg)
    ctx.reporter.log(
        f"{len(lists)} training lists; {len(config.creative_features)} creative features"
        f"{', embeddings of ' + encoder.name if encoder else ''}"
    )
    trained = train_ranker(
        lists,
        config,
        epochs=params["epochs"],
        batch_size=params["batch_size"],
        lr=params["lr"],
        seed=params["seed"],
        device=ctx.device,
        reporter=ctx.reporter,
        checkpoint_dir=Path(ctx.work_dir) / "ranker-train",  # a later attempt resumes here
    )
    if not trained.is_main_process:  # under accelerate launch, rank 0 evaluates and registers
        return None
    model, history = trained.model, trained.history
    ctx.reporter.progress(0, None, phase="evaluating on held-out days")
    metrics = evaluate(model, test_agg, train_agg, device=ctx.device, seed=params["seed"])
    metrics["windows"] = {
        "train": [str(tr_lo), str(tr_hi)],
        "test": [str(te_lo), str(te_hi)],
    }
    metrics["history"] = history
    metrics["resumed_from_step"] = trained.resumed_from_step
    out_dir = Path(ctx.work_dir) / "ranker"
    model.save_pretrained(out_dir)
    CreativeRanker.from_pretrained(out_dir)  # fail here, not at serving time
    registered = services.register_model(
        kind=RankingModel.Kind.RANKER,
        name=params["name"],
        source_dir=out_dir,
        config={
            "model": _plain(dataclasses.asdict(config) | {"norms": {}}),
            "params": dict(ctx.job.params or {}),
        },
        metrics=_plain(metrics),
        job=ctx.job,
        created_by=ctx.job.requested_by,
    )
    ctx.reporter.log(
        f"Registered {registered.name}: NDCG@3 {metrics['ndcg@3']}, GAUC {metrics['gauc']}"
    )
    return {
        "ranker": registered.name,
        **{k: metrics[k] for k in ("ndcg@1", "ndcg@3", "gauc", "auc", "nsctr")},
    }


# --- preview ---------------------------------------------------------------------------------
def run_preview(ctx) -> dict:
    from generation.models import Product

    from .scoring import rank_products

    params = ctx.params
    model = resolve_model(params["model"], kind=RankingModel.Kind.RANKER)
    products = Product.objects.filter(creatives__isnull=False).distinct().order_by("sku")
    if params.get("category"):
        products = products.filter(category=params["category"])
    products = list(products)
    slugs = params["segment"].split(",")
    out = {}
    for n, slug in enumerate(slugs):
        segment = Segment.objects.get(slug=slug)
        ctx.reporter.progress(n, len(slugs), phase=f"ranking for {slug}")
        entries = []
        for i in range(0, len(products), 200):
            for ranked in rank_products(
                model, segment=segment, products=products[i : i + 200], device=ctx.device
            ):
                for c in ranked["creatives"]:
                    entries.append(
                        {
                            "product_id": ranked["product_id"],
                            "creative_id": c["creative_id"],
                            "rank": c["rank"],
                            "score": c["score"],
                            "p_ctr": ranked["p_ctr"],
                            "contributions": c["contributions"],
                        }
                    )
        out[slug] = services.store_preview(
            segment=segment, model=model, entries=entries, job=ctx.job
        )
    ctx.reporter.progress(len(slugs), len(slugs), phase="stored")
    return {"model": model.name, "entries": out}


def _preview_lineage(params: dict):
    model = resolve_model(params["model"], kind=RankingModel.Kind.RANKER)
    return {"model": model.name, "segments": params["segment"]}, model


def register_kinds() -> None:
    from jobs.kinds import JobKind, register

    register(
        JobKind(
            name=FEATURES,
            run=run_features,
            params_form=FeaturesForm,
            label="Extract creative features",
            description="Visual, OCR and multimodal-LLM features per creative (cached).",
            resumable=True,
            max_attempts=3,
        )
    )
    register(
        JobKind(
            name=TRAIN_ENCODER,
            queue="gpu",
            run=run_train_encoder,
            params_form=EncoderForm,
            label="Train creative encoder",
            description="MoCo v3 contrastive encoder; embeddings and recall@k on held-out SKUs.",
            resumable=True,
            max_attempts=2,
            distributed=True,  # num_processes > 1: one process per GPU
        )
    )
    register(
        JobKind(
            name=TRAIN_RANKER,
            queue="gpu",
            run=run_train_ranker,
            params_form=RankerForm,
            label="Train creative ranker",
            description="Two-stage list-wise ranker on impression logs (time-based split).",
            resumable=True,
            max_attempts=2,
            distributed=True,  # num_processes > 1: one process per GPU
        )
    )
    register(
        JobKind(
            name=PREVIEW,
            queue="gpu",
            run=run_preview,
            params_form=PreviewForm,
            label="Preview ranking",
            description="Rank every product's creatives for segments with a ranker; stored.",
            resumable=True,
            max_attempts=2,
            lineage=_preview_lineage,
        )
    )
