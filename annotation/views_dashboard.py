"""Project dashboard (QA + ML engineers): progress, label distribution and annotator-vs-consensus
confusion drawn as inline SVG, agreement coefficients, per-annotator table, dataset versions.
All numbers come from a handful of aggregate queries (annotation.agreement)."""

from __future__ import annotations

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render

from annotation import agreement
from annotation.models import Item, Project
from core.policy import rule

BAR_W, BAR_H = 460, 28  # label distribution chart geometry (viewBox units; scales to the card)
CELL = 46  # confusion heatmap cell size (px)


def _progress(project) -> dict:
    agg = Item.objects.filter(project=project).aggregate(
        total=Count("id"),
        done=Count("id", filter=Q(status=Item.Status.DONE)),
        pending_review=Count("id", filter=Q(review_status=Item.Review.PENDING)),
        gold=Count("id", filter=Q(is_gold=True)),
        with_consensus=Count("id", filter=Q(consensus_label__isnull=False)),
    )
    agg["percent"] = round(100 * agg["done"] / agg["total"], 1) if agg["total"] else 0.0
    return agg


def _distribution_chart(dist: dict[str, dict[str, int]]) -> dict:
    # One scale for both series, so the longer (individual labels) bars fit the card too.
    peak = max([v["consensus"] for v in dist.values()] + [v["votes"] for v in dist.values()] + [1])
    label_w = 140
    bar_room = BAR_W - label_w - 40  # leave room for the count printed after each bar
    rows = []
    for i, (slug, counts) in enumerate(dist.items()):
        y = i * (BAR_H + 10)
        rows.append(
            {
                "slug": slug,
                "y": y,
                "text_y": y + BAR_H * 0.45,
                "consensus": counts["consensus"],
                "votes": counts["votes"],
                "w_consensus": round(bar_room * counts["consensus"] / peak, 1),
                "w_votes": round(bar_room * counts["votes"] / peak, 1),
                "half": BAR_H / 2,
            }
        )
    return {
        "rows": rows,
        "label_w": label_w,
        "width": BAR_W,
        "height": max(1, len(rows)) * (BAR_H + 10),
    }


def _heatmap(confusion: dict) -> dict:
    classes, matrix = confusion["classes"], confusion["matrix"]
    peak = max([v for row in matrix for v in row] + [1])
    margin = 140  # room for the row labels (longest: shape_hallucination)
    cells = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, value in enumerate(row):
            shade = value / peak
            # White → deep blue; diagonal (agreement) outlined.
            r = round(255 - 205 * shade)
            g = round(255 - 155 * shade)
            cells.append(
                {
                    "x": margin + j * CELL,
                    "y": 20 + i * CELL,
                    "cx": margin + j * CELL + CELL / 2,
                    "cy": 20 + i * CELL + CELL / 2 + 4,
                    "value": value,
                    "fill": f"rgb({r},{g},255)",
                    "text": "#fff" if shade > 0.55 else "#222",
                    "diag": i == j,
                    "title": f"annotator {classes[i]} / consensus {classes[j]}: {value} "
                    f"({100 * value / total:.0f}% of {classes[i]} labels)",
                }
            )
    return {
        "classes": [
            {"slug": s, "i": i, "row_y": 20 + i * CELL + CELL / 2 + 4, "col_x": margin + i * CELL}
            for i, s in enumerate(classes)
        ],
        "cells": cells,
        "cell": CELL,
        "margin": margin,
        # Column labels are rotated 60° below the grid: the last one reaches ~70 px right of its
        # column and ~120 px down; the viewBox holds them and the SVG scales to the card.
        "width": margin + len(classes) * CELL + 80,
        "height": 20 + len(classes) * CELL + 135,
        "axis_y": 20 + len(classes) * CELL + 10,
    }


@rule("reviewer", message="The dashboard is for QA and ML engineers.")
def project_dashboard(request, slug):
    project = get_object_or_404(Project.objects.select_related("schema"), slug=slug)
    dist = agreement.label_distribution(project=project)
    confusion = agreement.confusion_with_consensus(project=project)
    context = {
        "project": project,
        "progress": _progress(project),
        "distribution": _distribution_chart(dist),
        "heatmap": _heatmap(confusion),
        "confusion_total": sum(map(sum, confusion["matrix"])),
        "coefficients": agreement.project_agreement(project=project),
        "annotators": agreement.annotator_stats(project=project),
        "versions": list(project.dataset_versions.order_by("-created_at")[:20]),
    }
    return render(request, "annotation/dashboard.html", context)
