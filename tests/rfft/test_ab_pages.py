"""The blind A/B page records QA's verdicts per model and never reveals which side is which;
the comparison page shows both models' figures."""

from __future__ import annotations

import pytest
from django.urls import reverse

from feedback import rfft_selectors, rfft_services
from feedback.rfft_models import ABJudgement, ABPair, EvaluationImage, GeneratorEvaluation
from tests.factories import make_creative, make_product, make_user

MODEL, BASELINE = "tuned-secret-model-x", "base-secret-model-y"


def _evaluation(n_pairs: int = 6) -> GeneratorEvaluation:
    ev = GeneratorEvaluation.objects.create(
        name="eval-1",
        model_name=MODEL,
        baseline_name=BASELINE,
        reward_name="rew",
        judge_name="jud",
        products=["SKU-A"],
        seeds=list(range(n_pairs)),
        results={
            "models": {
                MODEL: {"usable_rate_judge": 0.7, "n_images": n_pairs},
                BASELINE: {"usable_rate_judge": 0.4, "n_images": n_pairs},
            },
            "threshold": 0.5,
        },
    )
    product = make_product(sku="SKU-A")
    for s in range(n_pairs):
        ims = {}
        for side, name in (("model", MODEL), ("baseline", BASELINE)):
            creative = make_creative(product=product, generator=name, prompt=f"p {name}")
            ims[side] = EvaluationImage.objects.create(
                evaluation=ev,
                side=side,
                creative=creative,
                product=product,
                seed=s,
                p_reward=0.6,
                p_judge=0.5,
            )
        ABPair.objects.create(
            evaluation=ev,
            model_image=ims["model"],
            baseline_image=ims["baseline"],
            a_on_left=s % 2 == 0,
            order=s,
        )
    return ev


@pytest.mark.django_db
def test_ab_page_is_blind_and_records_choices_per_model(client):
    ev = _evaluation()
    qa = make_user("qa")
    client.force_login(qa)
    url = reverse("feedback:ab", args=[ev.pk])
    seen = 0
    while True:
        page = client.get(url)
        assert page.status_code == 200
        html = page.content.decode()
        # Neither model name, nor the words model/baseline, nor the creatives' provenance.
        for secret in (MODEL, BASELINE, "baseline", "p tuned", "p base", "a_on_left"):
            assert secret not in html
        pair = rfft_selectors.next_pair(evaluation=ev, reviewer=qa)
        if pair is None:
            break
        left = pair.model_image if pair.a_on_left else pair.baseline_image
        assert left.creative.image.url in html
        r = client.post(
            url,
            {
                "pair": pair.pk,
                "choice": "left",
                "left_label": "available",
                "right_label": "space_mismatch",
            },
        )
        assert r.status_code == 302
        seen += 1
    assert seen == 6
    # "left" was the model on even seeds, the baseline on odd ones: stored per model.
    prefs = dict(ABJudgement.objects.values_list("pair__model_image__seed", "preference"))
    assert prefs == {s: ("model" if s % 2 == 0 else "baseline") for s in range(6)}
    human = rfft_selectors.human_figures(evaluation=ev)
    assert human["prefer_model"] == 0.5 and human["usable_model"] == 0.5
    assert human["usable_baseline"] == 0.5 and human["judgements"] == 6


@pytest.mark.django_db
def test_bad_choice_or_label_is_refused_and_double_submit_keeps_first(client):
    ev = _evaluation(1)
    qa = make_user("qa")
    client.force_login(qa)
    pair = ev.pairs.get()
    url = reverse("feedback:ab", args=[ev.pk])
    r = client.post(
        url,
        {"pair": pair.pk, "choice": "up", "left_label": "available", "right_label": "available"},
    )
    assert r.status_code == 400 and not ABJudgement.objects.exists()
    r = client.post(
        url,
        {"pair": pair.pk, "choice": "left", "left_label": "nonsense", "right_label": "available"},
    )
    assert r.status_code == 400 and not ABJudgement.objects.exists()
    first = rfft_services.record_ab_judgement(
        pair=pair, reviewer=qa, choice="same", left_label="available", right_label="available"
    )
    again = rfft_services.record_ab_judgement(
        pair=pair, reviewer=qa, choice="left", left_label="available", right_label="available"
    )
    assert again.pk == first.pk and again.preference == "same"


@pytest.mark.django_db
def test_annotators_cannot_open_ab_or_comparison(client):
    ev = _evaluation(1)
    client.force_login(make_user("annotator"))
    assert client.get(reverse("feedback:ab", args=[ev.pk])).status_code == 403
    assert client.get(reverse("feedback:generator-eval", args=[ev.pk])).status_code == 403


@pytest.mark.django_db
def test_comparison_page_shows_both_models_side_by_side(client):
    ev = _evaluation(2)
    client.force_login(make_user("ml_engineer"))
    html = client.get(reverse("feedback:generator-eval", args=[ev.pk])).content.decode()
    assert MODEL in html and BASELINE in html and "0.700" in html and "0.400" in html
    for im in EvaluationImage.objects.filter(evaluation=ev):
        assert im.creative.image.url in html
    listing = client.get(reverse("feedback:generator-evals")).content.decode()
    assert "eval-1" in listing
