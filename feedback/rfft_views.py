"""Generator evaluation pages: the list, the side-by-side comparison (ML engineers, QA) and the
blind A/B page (QA, ML engineers). The A/B page knows sides only: the template gets two image
URLs (content-addressed names, no model in them) and posts "left"/"right"/"same"; which model is
on which side stays in the database (see feedback.rfft_services)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from core.policy import rule

from . import rfft_selectors, rfft_services
from .rfft_models import ABPair, GeneratorEvaluation


@rule("reviewer", message="Generator evaluations are for QA and ML engineers.")
def evaluation_list(request):
    return render(
        request,
        "feedback/rfft_evaluations.html",
        {"evaluations": rfft_selectors.evaluations()[:200]},
    )


@rule("reviewer", message="Generator evaluations are for QA and ML engineers.")
def evaluation_detail(request, pk: int):
    evaluation = get_object_or_404(GeneratorEvaluation, pk=pk)
    results = evaluation.results or {}
    models = results.get("models") or {}
    return render(
        request,
        "feedback/rfft_compare.html",
        {
            "evaluation": evaluation,
            "model": models.get(evaluation.model_name) or {},
            "baseline": models.get(evaluation.baseline_name) or {},
            "results": results,
            "human": rfft_selectors.human_figures(evaluation=evaluation),
            "grid": rfft_selectors.comparison_grid(evaluation=evaluation),
        },
    )


@rule("reviewer", message="Generator evaluations are for QA and ML engineers.")
@require_http_methods(["GET", "POST"])
def ab_page(request, pk: int):
    evaluation = get_object_or_404(GeneratorEvaluation, pk=pk)
    error = None
    if request.method == "POST":
        pair = get_object_or_404(ABPair, pk=request.POST.get("pair"), evaluation=evaluation)
        try:
            rfft_services.record_ab_judgement(
                pair=pair,
                reviewer=request.user,
                choice=request.POST.get("choice", ""),
                left_label=request.POST.get("left_label", ""),
                right_label=request.POST.get("right_label", ""),
            )
        except ValueError as exc:
            error = str(exc)
        else:
            messages.success(request, "Recorded.")
            return redirect("feedback:ab", pk=evaluation.pk)
    pair = rfft_selectors.next_pair(evaluation=evaluation, reviewer=request.user)
    done, total = rfft_selectors.pair_progress(evaluation=evaluation, reviewer=request.user)
    ctx = {
        "evaluation_id": evaluation.pk,
        "done": done,
        "total": total,
        "error": error,
        "labels": rfft_services._label_slugs(),
    }
    if pair is not None:
        left, right = (
            (pair.model_image, pair.baseline_image)
            if pair.a_on_left
            else (pair.baseline_image, pair.model_image)
        )
        ctx.update(
            pair_id=pair.pk,
            left_url=left.creative.image.url,
            right_url=right.creative.image.url,
            product=left.product,
        )
    return render(request, "feedback/rfft_ab.html", ctx, status=400 if error else 200)
