"""Writes of the generator evaluation: `evaluate_generator` (one transaction at the end) and
`record_ab_judgement` (QA's blind A/B verdicts).

Concurrency: an evaluation is written by its job alone, in one transaction, after every image
is generated and scored (a retried job starts over; the unique evaluation name makes a second
write fail instead of duplicating). Two QA reviewers may judge the same pair: each gets their
own row (unique (pair, reviewer)); the same reviewer submitting twice (double click, two tabs)
hits the constraint and the first verdict stands (the second call returns it unchanged). The
pair's hidden side assignment is read inside the service, never sent to the browser: the form
posts "left"/"right"/"same" and the service maps sides to models.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from . import rfft_registry
from .rfft_models import ABJudgement, ABPair, EvaluationImage, GeneratorEvaluation
from .selectors import resolve_model

SIDES = ("left", "right", "same")


def evaluate_generator(*, params: dict, job=None, reporter=None, device: str | None = None) -> dict:
    import numpy as np
    from PIL import Image

    from generation.ml.config import SampleConfig
    from generation.models import Product
    from generation.services import create_creative

    from . import rfft_eval
    from .ml.model import RFNet
    from .rfft import load_prompts, product_inputs
    from .rfft_reward import RFNetReward, score_images

    model = rfft_registry.resolve_diffuser(params["model"])
    baseline = rfft_registry.resolve_diffuser(params["baseline"])
    judge_model = resolve_model(params["judge"])
    reward_name = params.get("reward") or rfft_registry.reward_name_of(model) or "active"
    reward_model = resolve_model(reward_name)
    if reward_model.pk == judge_model.pk:
        raise ValueError("The judge must be independent of the reward RFNet.")
    reward = RFNetReward(RFNet.from_pretrained(reward_model.checkpoint_path))
    judge = RFNetReward(RFNet.from_pretrained(judge_model.checkpoint_path))
    skus = [s for s in params["products"].split(",") if s]
    products = product_inputs(skus)
    prompts = load_prompts()
    seeds = list(range(int(params["seeds"])))
    threshold = float(params.get("threshold") or 0.5)
    # The same (product, prompt, seed) cells for every model: prompt i of product i (cycled).
    cells = [(pi, s) for pi in range(len(products)) for s in seeds]
    total = 2 * len(cells)
    done = 0
    by_side: dict[str, list] = {}
    rows_by_side: dict[str, list] = {}
    for side, entry in (("model", model), ("baseline", baseline)):
        pipe = rfft_registry.load_pipeline(entry, device=device)
        size = pipe.native_size or 512
        cfg = SampleConfig(
            size=size, steps=int(params["steps"]), guidance_scale=float(params["guidance_scale"])
        )
        generated = []
        for start in range(0, len(cells), cfg.batch_size):
            chunk = cells[start : start + cfg.batch_size]
            out = pipe.generate(
                [products[pi].cutout for pi, _ in chunk],
                [prompts[pi % len(prompts)][0] for pi, _ in chunk],
                [prompts[pi % len(prompts)][1] for pi, _ in chunk],
                [s for _, s in chunk],
                cfg,
            )
            generated.extend(out)
            done += len(chunk)
            if reporter is not None:
                reporter.progress(done, total, phase=f"generating ({side}: {entry.name})")
        ims = [Image.fromarray(g.image) for g in generated]
        cut = [products[pi].cutout for pi, _ in cells]
        boxes = [g.prepared.box for g in generated]
        caps = [g.prompt for g in generated]
        p_r = score_images(reward, ims, cut, boxes, caps)
        p_j = score_images(judge, ims, cut, boxes, caps)
        items = [
            rfft_eval.Generated(
                product=products[pi].sku,
                seed=s,
                prompt=g.prompt,
                image=im,
                background=g.prepared.placed[..., 3] < 255,
                p_reward=float(a),
                p_judge=float(b),
            )
            for (pi, s), g, im, a, b in zip(cells, generated, ims, p_r, p_j, strict=True)
        ]
        by_side[side] = items
        rows_by_side[side] = list(zip(cells, generated, p_r, p_j, strict=True))
        del pipe
    base_summary = rfft_eval.summarise(by_side["baseline"], threshold)
    summary = rfft_eval.compare(rfft_eval.summarise(by_side["model"], threshold), base_summary)
    results = {
        "model": model.name,
        "baseline": baseline.name,
        "reward": reward_model.name,
        "judge": judge_model.name,
        "threshold": threshold,
        "n_images": summary["n_images"],
        "usable_rate_reward": summary["usable_rate_reward"],
        "usable_rate_judge": summary["usable_rate_judge"],
        "diversity": summary["diversity"],
        "diversity_ratio": summary["diversity_ratio"],
        "models": {model.name: summary, baseline.name: base_summary},
    }
    product_ids = dict(Product.objects.filter(sku__in=skus).values_list("sku", "id"))
    # Images are stored (content-addressed, outside the transaction: a rollback leaves only
    # unreferenced files, never rows pointing at missing ones), then every row in one go.
    stored: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side, entry in (("model", model), ("baseline", baseline)):
            stored[side] = []
            for (pi, s), g, a, b in rows_by_side[side]:
                path = Path(tmp) / f"{side}-{pi}-{s}.png"
                Image.fromarray(np.asarray(g.image)).save(path)
                product = Product.objects.get(pk=product_ids[products[pi].sku])
                creative, _ = create_creative(
                    product=product,
                    image_path=path,
                    prompt=g.prompt,
                    negative_prompt=g.negative_prompt,
                    seed=s,
                    generator=entry.name,
                    generator_version="evaluate_generator",
                    params={
                        "placement": list(g.prepared.box),
                        "steps": int(params["steps"]),
                        "guidance_scale": float(params["guidance_scale"]),
                    },
                )
                stored[side].append((creative, product, pi, s, a, b))
    name = f"eval-{model.name}-vs-{baseline.name}-{timezone.now():%Y%m%d%H%M%S}"[:150]
    with transaction.atomic():
        evaluation = GeneratorEvaluation.objects.create(
            name=name,
            job=job,
            model_name=model.name,
            baseline_name=baseline.name,
            reward_name=reward_model.name,
            judge_name=judge_model.name,
            products=skus,
            seeds=seeds,
            prompts=[prompts[pi % len(prompts)][0] for pi in range(len(products))],
            results=results,
        )
        images = {}
        for side in ("model", "baseline"):
            for creative, product, pi, s, a, b in stored[side]:
                images[(side, pi, s)] = EvaluationImage.objects.create(
                    evaluation=evaluation,
                    side=side,
                    creative=creative,
                    product=product,
                    seed=s,
                    prompt_index=pi,
                    p_reward=float(a),
                    p_judge=float(b),
                )
        order = list(range(len(cells)))
        secrets.SystemRandom().shuffle(order)
        ABPair.objects.bulk_create(
            ABPair(
                evaluation=evaluation,
                model_image=images[("model", pi, s)],
                baseline_image=images[("baseline", pi, s)],
                a_on_left=bool(secrets.randbits(1)),
                order=order[i],
            )
            for i, (pi, s) in enumerate(cells)
        )
    return {**{k: v for k, v in results.items() if k != "models"}, "evaluation": evaluation.name}


def record_ab_judgement(
    *, pair: ABPair, reviewer, choice: str, left_label: str, right_label: str
) -> ABJudgement:
    """Store a blind verdict given by screen side; returns the (first) judgement."""
    if choice not in SIDES:
        raise ValueError(f"choice must be one of {SIDES}")
    valid = set(_label_slugs())
    for label in (left_label, right_label):
        if label not in valid:
            raise ValueError(f"unknown label {label!r}")
    model_left = pair.a_on_left
    if choice == "same":
        preference = ABJudgement.Preference.SAME
    elif (choice == "left") == model_left:
        preference = ABJudgement.Preference.MODEL
    else:
        preference = ABJudgement.Preference.BASELINE
    model_label, baseline_label = (
        (left_label, right_label) if model_left else (right_label, left_label)
    )
    try:
        with transaction.atomic():
            return ABJudgement.objects.create(
                pair=pair,
                reviewer=reviewer,
                preference=preference,
                model_label=model_label,
                baseline_label=baseline_label,
            )
    except IntegrityError:
        return ABJudgement.objects.get(pair=pair, reviewer=reviewer)


def _label_slugs() -> list[str]:
    from feedback.ml.presets import RF1M_SLUGS

    return list(RF1M_SLUGS)
