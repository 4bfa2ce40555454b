"""Recurrent generation (job kind `recurrent_generate`, queue gpu): generate, let RFNet judge,
regenerate what it rejects with a new seed, up to a budget per product × prompt template.

Every attempt is stored as a Creative + `generation.Generation` row (group, attempt, seed,
score = P(available), kept) linked to the job; the job result reports the usable rate, attempts
per usable image and the compute (GPU) seconds spent. The loop is feedback.recurrent_core.

Concurrency: one job owns its rows; (job, group, attempt) is unique in the database, so a resumed
or duplicated worker cannot store an attempt twice. A resumed job rebuilds the loop's state from
its stored rows (scoring any attempt stored but not yet scored) and continues.
"""

from __future__ import annotations

import logging
from pathlib import Path

from django import forms
from django.core.exceptions import ValidationError

from generation.forms import GenerateForm
from generation.models import Generation
from jobs.kinds import JobKind, register

from .recurrent_core import Attempt, GroupState, attempt_seed, recurrent

log = logging.getLogger(__name__)

RECURRENT = "recurrent_generate"


def p_available(scorer, samples) -> list[float]:
    """Calibrated P(available) of scored samples (Scorer.score_detailed, the model's one
    definition); every recurrent-generation score goes through here."""
    if not samples:
        return []
    return [float(p) for p in scorer.score_detailed(samples)["p_available"]]


def stored_p_available(creative_ids) -> dict[int, float]:
    """Stored calibrated P(available) of creatives by the active RFNet (the generation pages'
    verdicts); {} when no model is active."""
    from .selectors import ModelNotFound, p_available_by_creative

    try:
        return p_available_by_creative(creative_ids=creative_ids)
    except ModelNotFound:
        return {}


class RecurrentForm(GenerateForm):
    reward = forms.CharField(initial="active", help_text="RFNet model: name, 'active', 'latest'.")
    budget = forms.IntegerField(initial=4, min_value=1, max_value=100, help_text="K attempts.")
    threshold = forms.FloatField(initial=0.5, min_value=0.0, max_value=1.0, help_text="τ")
    seed_start = forms.IntegerField(initial=0, min_value=0)
    seeds = forms.CharField(required=False, widget=forms.HiddenInput)  # attempts pick seeds

    def clean_seeds(self):
        return "0"

    def clean_reward(self):
        from .selectors import ModelNotFound, resolve_model

        try:
            return resolve_model(self.cleaned_data.get("reward") or "active").name
        except ModelNotFound as exc:
            raise ValidationError(str(exc)) from None


def _groups(params: dict):
    """(group index → (product, template index, template)) for every product × template."""
    from generation import selectors
    from generation.forms import parse_skus
    from generation.jobs import templates_from_params

    products = selectors.select_products(
        skus=parse_skus(params.get("skus")),
        category=params.get("category") or "",
        all_products=bool(params.get("all_products")),
    )
    templates = templates_from_params(params)
    out, g = {}, 0
    for product in products:
        for ti, t in enumerate(templates):
            out[g] = (product, ti, t)
            g += 1
    return out


def run_recurrent(ctx) -> dict:
    from feedback.ml.scoring import Scorer
    from generation import selectors as gen_selectors
    from generation.generating import Generator, Request, style_kwargs

    from .samples import creative_sample
    from .selectors import resolve_model

    params = ctx.params
    model = gen_selectors.resolve_diffusion_model(params["model"])
    reward = resolve_model(params["reward"])
    groups = _groups(params)
    budget, tau = int(params["budget"]), float(params["threshold"])
    gen = Generator(
        model, device=ctx.device, size=params.get("size") or 0, steps=params["steps"],
        guidance_scale=params["guidance"], batch_size=params["batch_size"],
        category_tokens=params.get("category_tokens", True) is not False,
        **style_kwargs(params),
    )  # fmt: skip
    scorer = Scorer.from_pretrained(reward.checkpoint_path, device=ctx.device)
    scratch = Path(ctx.work_dir) / "scratch"

    def seed_for(g, k):
        return attempt_seed(params.get("seed_start") or 0, k)

    # Resume: what earlier attempts of this job decided.
    done: dict[int, GroupState] = {}
    stored = list(Generation.objects.filter(job=ctx.job).select_related("creative__product"))
    unscored = [r for r in stored if r.score is None]
    if unscored:
        _score_rows(unscored, scorer, tau, creative_sample)
    for r in stored:
        s = done.setdefault(r.group, GroupState())
        s.attempts = max(s.attempts, r.attempt)
        s.kept = s.kept or bool(r.kept)
    if stored:
        ctx.reporter.log(f"Resuming: {len(stored)} attempts already stored.")

    def generate(attempts: list[Attempt]) -> list[Attempt]:
        reqs = []
        for a in attempts:
            product, ti, template = groups[a.group]
            reqs.append(Request(product, template, ti, a.seed, a.group, a.attempt,
                                extra={"recurrent": {"budget": budget, "threshold": tau,
                                                     "reward_model": reward.name}}))  # fmt: skip
        for a, res in zip(attempts, gen.run(reqs), strict=True):
            a.payload = gen.store(res, job=ctx.job, scratch_dir=scratch)
            a.seconds = res.seconds
        return attempts

    def score(attempts: list[Attempt]) -> list[float]:
        rows = [a.payload for a in attempts]
        return _score_rows(rows, scorer, tau, creative_sample)

    total = len(groups) * budget

    def on_round(k, stats):
        ctx.reporter.metric("usable_rate", stats.kept / max(1, stats.groups), step=k)
        ctx.reporter.progress(min(total, stats.attempts), total,
                              phase=f"attempt {k}/{budget}: {stats.kept} usable")  # fmt: skip

    ctx.reporter.progress(0, total, phase="recurrent generation")
    stats = recurrent(groups=list(groups), budget=budget, threshold=tau, generate=generate,
                      score=score, seed_for=seed_for, done=done, on_round=on_round)  # fmt: skip
    rows = Generation.objects.filter(job=ctx.job)
    kept = rows.filter(kept=True).count()
    attempts = rows.count()
    seconds = sum(rows.values_list("gpu_seconds", flat=True))
    if params.get("project"):
        from generation import plugins

        creatives = [g.creative for g in rows.filter(kept=True).select_related("creative")]
        queued = plugins.get("push_to_project")(params["project"], creatives,
                                                ctx.job.requested_by)  # fmt: skip
        ctx.reporter.log(f"Queued {queued} kept creatives in {params['project']}.")
    return {
        "model": model.name,
        "reward_model": reward.name,
        "budget": budget,
        "threshold": tau,
        "groups": len(groups),
        "attempts": attempts,
        "kept": kept,
        "usable_rate": kept / len(groups) if groups else None,
        "first_attempt_usable_rate": (
            rows.filter(attempt=1, kept=True).count() / len(groups) if groups else None
        ),
        "attempts_per_usable_image": attempts / kept if kept else None,
        "gpu_seconds": round(seconds, 2),
        "gpu_seconds_per_usable_image": round(seconds / kept, 2) if kept else None,
        "device": ctx.device,
        "loop": stats.as_dict(),
    }


def _score_rows(rows, scorer, tau, creative_sample) -> list[float]:
    from generation import services as gen_services

    samples = [creative_sample(r.creative) for r in rows]
    if any(s is None for s in samples):
        raise RuntimeError("a generated creative's file is missing: cannot score it")
    scores = p_available(scorer, samples)
    for r, p in zip(rows, scores, strict=True):
        gen_services.set_generation_verdict(generation=r, score=p, kept=p >= tau)
    return scores


def _lineage(params: dict):
    from generation import selectors as gen_selectors

    model = gen_selectors.resolve_diffusion_model(params["model"])
    return {"model": model.name, "reward_model": params["reward"], "budget": params["budget"],
            "threshold": params["threshold"]}, model  # fmt: skip


def register_kinds() -> None:
    from generation import plugins

    plugins.register("verdicts", stored_p_available)  # RFNet verdicts on generation's pages
    register(
        JobKind(
            name=RECURRENT,
            queue="gpu",
            run=run_recurrent,
            params_form=RecurrentForm,
            label="Recurrent generation",
            description="Regenerate what RFNet rejects: up to K attempts per product × prompt "
            "until P(available) ≥ τ.",
            resumable=True,
            max_attempts=3,
            lineage=_lineage,
        )
    )


def usable_rate_by_model() -> list[dict]:
    """Per diffusion model over every gated attempt: groups, kept, attempts, usable rate,
    attempts per usable image, GPU seconds (the report on the models page and the CLI)."""
    from django.db.models import Count, Q, Sum

    rows = (
        Generation.objects.filter(kept__isnull=False)
        .values("model__name")
        .annotate(
            attempts=Count("id"),
            kept=Count("id", filter=Q(kept=True)),
            groups=Count("id", filter=Q(attempt=1)),  # one first attempt per group
            seconds=Sum("gpu_seconds"),
        )
        .order_by("model__name")
    )
    out = []
    for r in rows:
        out.append({
            "model": r["model__name"], "groups": r["groups"], "attempts": r["attempts"],
            "kept": r["kept"], "usable_rate": r["kept"] / r["groups"] if r["groups"] else None,
            "attempts_per_usable_image": r["attempts"] / r["kept"] if r["kept"] else None,
            "gpu_seconds": round(r["seconds"] or 0.0, 2),
        })  # fmt: skip
    return out
