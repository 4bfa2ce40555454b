"""Reads behind the generation pages (selectors shaped for templates)."""

from __future__ import annotations

from generation import selectors
from generation.models import Generation


def _verdicts(creative_ids) -> dict[int, float]:
    """RFNet's stored P(available) per creative, when feedback provides it (plug-in by name)."""
    from generation import plugins

    try:
        fn = plugins.get("verdicts")
    except Exception:
        return {}
    return fn(list(creative_ids))


def _tile(g: Generation, verdicts) -> dict:
    score = g.score if g.score is not None else verdicts.get(g.creative_id)
    return {"g": g, "creative": g.creative, "score": score, "kept": g.kept,
            "gated": g.kept is not None}  # fmt: skip


def run_context(*, job, kept: str = "") -> dict:
    rows = selectors.generations_of_job(job.pk)
    if kept == "1":
        rows = rows.filter(kept=True)
    elif kept == "0":
        rows = rows.filter(kept=False)
    rows = list(rows)
    verdicts = _verdicts({g.creative_id for g in rows})
    products: dict[int, dict] = {}
    for g in rows:
        block = products.setdefault(g.product_id, {"product": g.product, "tiles": []})
        block["tiles"].append(_tile(g, verdicts))
    all_rows = selectors.generations_of_job(job.pk)
    return {
        "job": job,
        "products": list(products.values()),
        "kept": kept,
        "n_total": all_rows.count(),
        "n_kept": all_rows.filter(kept=True).count(),
        "n_rejected": all_rows.filter(kept=False).count(),
        "result": job.result or {},
    }


def product_context(*, product) -> dict:
    rows = list(selectors.generations_of_product(product)[:500])
    verdicts = _verdicts({g.creative_id for g in rows})
    return {"product": product, "tiles": [_tile(g, verdicts) for g in rows],
            "other_creatives": product.creatives.exclude(generations__isnull=False)
            .order_by("-id")[:60]}  # fmt: skip


def creative_context(*, creative) -> dict:
    gen = selectors.generation_of_creative(creative)
    chain = selectors.lineage_chain(gen.model) if gen is not None else []
    verdicts = _verdicts([creative.pk])
    params = creative.params or {}
    return {
        "creative": creative,
        "generation": gen,
        "attempts": (
            list(
                Generation.objects.filter(job_id=gen.job_id, group=gen.group)
                .select_related("creative")
                .order_by("attempt")
            )
            if gen is not None and gen.job_id
            else []
        ),  # fmt: skip
        "lineage": chain,
        "verdict": gen.score
        if gen is not None and gen.score is not None
        else verdicts.get(creative.pk),
        "provenance": sorted((k, v) for k, v in params.items() if k != "style_reference"),
        "style_reference": style
        if isinstance(style := params.get("style_reference"), dict)
        else None,
    }
