"""Project dashboard (QA + ML engineers): progress, label distribution and annotator-vs-consensus
confusion drawn as inline SVG, agreement coefficients, per-annotator table, dataset versions.
All numbers come from a handful of aggregate queries (annotation.agreement)."""

from __future__ import annotations

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render

from annotation import agreement
from annotation.models import Item, Project
from core import charts
from core.policy import rule

CELL = 46  # confusion heatmap cell size (viewBox units; the SVG scales to the card)


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


def _distribution_chart(dist: dict[str, dict[str, int]]):
    return charts.grouped_bars(
        [(slug, (c["consensus"], c["votes"])) for slug, c in dist.items()],
        series=[("items (consensus)", "#1f6feb"), ("labels (votes)", "#9ecbff")],
        title="Label distribution",
        svg_id="label-distribution",
    )


def _heatmap(confusion: dict):
    classes = confusion["classes"]
    return charts.heatmap(
        confusion["matrix"],
        classes,
        title="Confusion matrix: annotator label by consensus label",
        svg_id="confusion",
        col_axis="consensus →",
        shade_by="peak",
        cell=CELL,
        cell_title=lambda i, j, value, total: (
            f"annotator {classes[i]} / consensus {classes[j]}: {value} "
            f"({100 * value / (total or 1):.0f}% of {classes[i]} labels)"
        ),
    )


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
