"""RFNet's stored verdict as a ranker input and as the preview's "usable only" filter."""

import pytest

from feedback.models import CreativeScore, FeedbackModel
from ranking.data import creative_values
from ranking.models import PreviewEntry, RankingModel, Segment
from ranking.rfnet import rfnet_p_available
from ranking.selectors import preview_lists
from tests.feedback.conftest import rf1m_schema  # noqa: F401  (fixture)

from .conftest import catalogue

pytestmark = pytest.mark.django_db


def test_rfnet_probability_feeds_features_and_filter(rf1m_schema):  # noqa: F811
    # Scores are what ranking reads; the weights behind them are feedback's business.
    model = FeedbackModel.objects.create(
        name="rfnet-x", schema=rf1m_schema, status="active", checkpoint="rfnet-x"
    )
    cat = catalogue(1, 2)
    good, bad = cat["P-0"]
    for creative, p, label in ((good, 0.9, "available"), (bad, 0.2, "unsuitable")):
        CreativeScore.objects.create(
            creative=creative,
            model=model,
            probs={"available": p, label: 1 - p} if label != "available" else {"available": p},
            p_available=p,
            predicted_label=label,
            confidence=p if label == "available" else 1 - p,
            uncertainty=0.5,
        )
    verdicts = rfnet_p_available(creative_ids=[good.pk, bad.pk])
    assert verdicts[good.pk]["p_available"] == 0.9 and verdicts[bad.pk]["label"] == "unsuitable"
    values = creative_values([good.pk, bad.pk])
    assert values[good.pk]["rfnet.p_available"] == 0.9
    assert values[bad.pk]["rfnet.p_available"] == 0.2
    segment = Segment.objects.create(slug="s")
    ranker = RankingModel.objects.create(kind="ranker", name="r", checkpoint="ranking/r")
    for rank, c in enumerate((bad, good), start=1):
        PreviewEntry.objects.create(
            segment=segment,
            model=ranker,
            product=c.product,
            creative=c,
            rank=rank,
            score=0,
            p_ctr=0.01,
        )
    lists = preview_lists(segment=segment, model=ranker)
    assert [e.creative_id for e in lists[0]["entries"]] == [bad.pk, good.pk]
    usable = preview_lists(segment=segment, model=ranker, usable_only=True)
    assert [e.creative_id for e in usable[0]["entries"]] == [good.pk]
