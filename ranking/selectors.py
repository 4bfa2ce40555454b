"""Reads of the ranking app."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from django.core.exceptions import ObjectDoesNotExist

from .models import CreativeEmbedding, CreativeFeatures, PreviewEntry, RankingModel, Segment


class ModelNotFound(ObjectDoesNotExist):
    pass


def resolve_model(name: str | None, *, kind: str) -> RankingModel:
    """`latest` (newest registered of that kind) or a name (contract item 2)."""
    name = (name or "latest").strip()
    usable = RankingModel.objects.filter(kind=kind).exclude(checkpoint="")
    label = dict(RankingModel.Kind.choices)[kind].lower()
    if name == "latest":
        model = usable.order_by("-created_at", "-id").first()
        if model is None:
            raise ModelNotFound(f"No {label} is registered yet.")
        return model
    model = usable.filter(name=name).first()
    if model is None:
        raise ModelNotFound(f"No {label} named {name!r}.")
    return model


def latest_features(creative_ids) -> dict[int, dict[str, dict]]:
    """{creative_id: {extractor: values}}, the newest version of each extractor."""
    out: dict[int, dict[str, dict]] = defaultdict(dict)
    rows = (
        CreativeFeatures.objects.filter(creative_id__in=list(creative_ids), error="")
        .order_by("creative_id", "extractor", "created_at", "id")
        .values_list("creative_id", "extractor", "values")
    )
    for cid, extractor, values in rows:
        out[cid][extractor] = values  # later rows (newer versions) win
    return out


def embeddings(*, encoder: RankingModel, creative_ids) -> dict[int, np.ndarray]:
    rows = CreativeEmbedding.objects.filter(
        encoder=encoder, creative_id__in=list(creative_ids)
    ).values_list("creative_id", "vector")
    return {cid: np.frombuffer(bytes(v), np.float32) for cid, v in rows}


def catalogue_version(*, encoder: RankingModel | None = None) -> tuple:
    """(count, max id) of every table a ranker's inputs come from - creatives, products,
    features, the encoder's embeddings - and RFNet's verdicts: a served catalogue built under
    another version is stale. Rows rewritten in place (the same key upserted again) keep the
    version; the serving cache also expires by age for those (ranking.scoring)."""
    from django.db.models import Count, Max

    from generation.models import Creative, Product

    from .rfnet import scores_version

    def agg(qs):
        row = qs.aggregate(n=Count("id"), m=Max("id"))
        return (row["n"], row["m"])

    embedded = CreativeEmbedding.objects.filter(encoder=encoder) if encoder is not None else None
    return (
        agg(Creative.objects.all()),
        agg(Product.objects.all()),
        agg(CreativeFeatures.objects.all()),
        agg(embedded) if embedded is not None else None,
        scores_version(),
    )


def segments_for_preview():
    return Segment.objects.order_by("slug")


def rankers():
    return RankingModel.objects.filter(kind=RankingModel.Kind.RANKER).exclude(checkpoint="")


def preview_lists(
    *, segment: Segment, model: RankingModel, category: str = "", usable_only: bool = False
) -> list[dict]:
    """[{product, p_ctr, entries: [PreviewEntry with creative, verdict]}] in product order."""
    from .rfnet import rfnet_p_available

    entries = list(
        PreviewEntry.objects.filter(segment=segment, model=model)
        .select_related("product", "creative")
        .order_by("product__sku", "rank")
    )
    if category:
        entries = [e for e in entries if e.product.category == category]
    verdicts = rfnet_p_available(creative_ids=[e.creative_id for e in entries])
    products: dict[int, dict] = {}
    for e in entries:
        e.verdict = verdicts.get(e.creative_id)
        if usable_only and (e.verdict is None or e.verdict["label"] != "available"):
            continue
        group = products.setdefault(
            e.product_id, {"product": e.product, "p_ctr": e.p_ctr, "entries": []}
        )
        group["entries"].append(e)
    return list(products.values())


def similar_creatives(*, creative_id: int, k: int = 6) -> list[dict]:
    """Nearest creatives by the newest encoder's embeddings (Faiss), without the creative."""
    from generation.models import Creative

    encoder = RankingModel.objects.filter(kind=RankingModel.Kind.ENCODER).exclude(checkpoint="")
    encoder = encoder.order_by("-created_at", "-id").first()
    if encoder is None:
        return []
    own = CreativeEmbedding.objects.filter(encoder=encoder, creative_id=creative_id).first()
    if own is None:
        return []
    from .index import encoder_index

    ids, index = encoder_index(encoder)
    query = np.frombuffer(bytes(own.vector), np.float32)[None]
    sims, idx = index.search(query, min(k + 1, len(ids)))
    hits = [(ids[j], float(s)) for j, s in zip(idx[0], sims[0], strict=True) if j >= 0]
    hits = [(cid, s) for cid, s in hits if cid != creative_id][:k]
    creatives = Creative.objects.select_related("product").in_bulk([cid for cid, _ in hits])
    return [{"creative": creatives[cid], "similarity": s} for cid, s in hits if cid in creatives]
