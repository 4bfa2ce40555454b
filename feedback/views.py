"""Model pages, comparison and the disagreements list (QA and ML engineers; never annotators)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Project
from core import charts
from core.policy import is_ml_engineer, rule

from . import selectors, services
from .models import FeedbackModel

_PAGES = "RFNet pages are for QA and ML engineers."
_MANAGE = "Only ML engineers may promote or retire models."


def _confusion(matrix, labels):
    """RFNet's confusion matrix: rows the true class, cells shaded by the row's share."""
    return charts.heatmap(
        matrix,
        labels,
        title="Confusion matrix",
        col_axis="predicted →",
        row_axis="rows: true class",
        cell=34,
        cell_title=lambda i, j, value, total: f"true {labels[i]}, predicted {labels[j]}: {value}",
    )


def _curves(title: str, series: dict):
    if not series:
        return ""
    return charts.line_chart(
        title, {name: sorted(points) for name, points in series.items()}, width=520, height=260
    )


def _per_class_rows(metrics: dict, class_names) -> list[dict]:
    per_class = metrics.get("per_class") or {}
    return [{"slug": slug, **(per_class.get(slug) or {})} for slug in class_names]


@rule("reviewer", message=_PAGES)
def model_list(request):
    models = list(selectors.model_list())
    return render(
        request,
        "feedback/model_list.html",
        {"models": models, "can_manage": is_ml_engineer(request.user)},
    )


@rule("reviewer", message=_PAGES)
def model_detail(request, name: str):
    model = get_object_or_404(selectors.model_list(), name=name)
    metrics = model.metrics or {}
    class_names = model.class_names
    history = selectors.training_history(model)
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if "loss" not in k}
    context = {
        "model": model,
        "metrics": metrics,
        "per_class": _per_class_rows(metrics, class_names),
        "available": metrics.get("available") or {},
        "agreement": metrics.get("agreement") or {},
        "confusion_svg": _confusion(metrics.get("confusion") or [], class_names),
        "calibration_svg": charts.reliability_diagram(metrics.get("calibration") or []),
        "loss_svg": _curves("Loss", losses),
        "curves_svg": _curves("Validation metrics", others),
        "evaluations": selectors.evaluations_for(model=model),
        "others": FeedbackModel.objects.exclude(pk=model.pk).values_list("name", flat=True),
        "can_manage": is_ml_engineer(request.user),
    }
    return render(request, "feedback/model_detail.html", context)


@require_POST
@rule("ml_engineer", message=_MANAGE)
def model_action(request, name: str, action: str):
    model = get_object_or_404(FeedbackModel, name=name)
    try:
        if action == "promote":
            services.promote_model(model=model)
            messages.success(request, f"{model.name} is now the active model.")
        elif action == "retire":
            services.retire_model(model=model)
            messages.success(request, f"{model.name} is retired.")
        else:
            raise PermissionDenied(f"Unknown action {action!r}.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("feedback:model-detail", name=model.name)


def _comparison_metrics(a: FeedbackModel, b: FeedbackModel) -> tuple[str | None, dict, dict]:
    """Metrics of both models on one dataset version: a shared evaluation if any, else their
    training test metrics when they were trained on the same version."""
    evals_a = {
        (e.dataset_version.name, e.split): e.metrics for e in selectors.evaluations_for(model=a)
    }
    evals_b = {
        (e.dataset_version.name, e.split): e.metrics for e in selectors.evaluations_for(model=b)
    }
    if a.dataset_version_id:
        evals_a.setdefault((a.dataset_version.name, "test"), a.metrics)
    if b.dataset_version_id:
        evals_b.setdefault((b.dataset_version.name, "test"), b.metrics)
    shared = sorted(set(evals_a) & set(evals_b), key=lambda k: (k[1] != "test", k[0]))
    if not shared:
        return None, a.metrics, b.metrics
    key = shared[0]
    return f"{key[0]} ({key[1]})", evals_a[key], evals_b[key]


@rule("reviewer", message=_PAGES)
def compare(request):
    names = list(FeedbackModel.objects.values_list("name", flat=True))
    a_name, b_name = request.GET.get("a", ""), request.GET.get("b", "")
    context = {"names": names, "a_name": a_name, "b_name": b_name}
    if a_name and b_name:
        a = get_object_or_404(selectors.model_list(), name=a_name)
        b = get_object_or_404(selectors.model_list(), name=b_name)
        dataset, ma, mb = _comparison_metrics(a, b)
        classes = list(dict.fromkeys([*a.class_names, *b.class_names]))
        rows = []
        for slug in classes:
            pa = (ma.get("per_class") or {}).get(slug) or {}
            pb = (mb.get("per_class") or {}).get(slug) or {}
            rows.append({"slug": slug, "a": pa, "b": pb})
        context.update(
            {
                "a": a,
                "b": b,
                "dataset": dataset,
                "ma": ma,
                "mb": mb,
                "rows": rows,
                "a_confusion": _confusion(ma.get("confusion") or [], a.class_names),
                "b_confusion": _confusion(mb.get("confusion") or [], b.class_names),
                "a_calibration": charts.reliability_diagram(ma.get("calibration") or []),
                "b_calibration": charts.reliability_diagram(mb.get("calibration") or []),
            }
        )
    return render(request, "feedback/compare.html", context)


@rule("reviewer", message=_PAGES)
def disagreements(request):
    projects = Project.objects.filter(archived=False)
    slug = request.GET.get("project", "")
    project = get_object_or_404(Project, slug=slug) if slug else None
    after = None
    if request.GET.get("after"):
        try:
            after = selectors.DisagreementCursor.parse(request.GET["after"])
        except ValueError as exc:
            # A hand-edited or truncated link: say what is wrong instead of guessing a page.
            return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    model = selectors.active_model(schema=project.schema) if project else None
    page = None
    if model is not None:
        # Keyset paging (?after=<confidence>:<item id>), no COUNT: every page costs what the
        # first does at 1M items, where OFFSET re-read every row before the page.
        page = selectors.disagreements_page(project=project, model=model, after=after)
    return render(
        request,
        "feedback/disagreements.html",
        {
            "projects": projects,
            "project": project,
            "rows": page.rows if page else [],
            "model": model,
            "page": page,
        },
    )
