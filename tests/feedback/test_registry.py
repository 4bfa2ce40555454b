import numpy as np
import pytest
from django.conf import settings
from django.db import IntegrityError, transaction

from feedback import selectors, services
from feedback.analysis import agreement_report, fleiss_kappa, summarize
from feedback.models import CreativeScore, FeedbackModel
from tests.factories import make_creatives

from .conftest import RF1M


def test_register_names_and_checkpoint_folder(register):
    a = register()
    b = register()
    assert (a.name, b.name) == ("rfnet-tiny-test-1", "rfnet-tiny-test-2")
    assert a.status == FeedbackModel.Status.CANDIDATE
    assert a.checkpoint_path == settings.RFSTUDIO_MODELS_DIR / a.name
    assert (a.checkpoint_path / "config.json").exists() or any(a.checkpoint_path.iterdir())
    # No staging folder is left behind.
    assert not [p for p in settings.RFSTUDIO_MODELS_DIR.iterdir() if p.name.startswith(".")]


def test_promotion_keeps_one_active_per_schema(register):
    a, b = register(), register()
    services.promote_model(model=a)
    services.promote_model(model=b)
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.status == FeedbackModel.Status.RETIRED and a.retired_at is not None
    assert b.status == FeedbackModel.Status.ACTIVE and b.promoted_at is not None
    assert selectors.resolve_model("active") == b
    assert selectors.resolve_model("latest") == b
    services.retire_model(model=b)
    with pytest.raises(selectors.ModelNotFound, match="No RFNet model is active"):
        selectors.resolve_model("active")


def test_database_refuses_two_active_models(register):
    a, b = register(), register()
    services.promote_model(model=a)
    with pytest.raises(IntegrityError), transaction.atomic():
        FeedbackModel.objects.filter(pk=b.pk).update(status=FeedbackModel.Status.ACTIVE)


def test_resolve_model_errors(register):
    with pytest.raises(selectors.ModelNotFound, match="No trained RFNet"):
        selectors.resolve_model("latest")
    with pytest.raises(selectors.ModelNotFound, match="named 'nope'"):
        selectors.resolve_model("nope")


def test_store_scores_upserts(register):
    model = register()
    creatives = make_creatives(2)
    ids = [c.pk for c in creatives[:2]]
    probs = np.array([[0.9, 0.02, 0.02, 0.02, 0.02, 0.02], [1 / 6] * 6])
    assert services.store_scores(model=model, creative_ids=ids, probs=probs) == 2
    services.store_scores(model=model, creative_ids=ids[:1], probs=probs[1:])
    assert CreativeScore.objects.count() == 2
    first = CreativeScore.objects.get(creative_id=ids[0])
    assert first.uncertainty == pytest.approx(1.0)
    assert set(first.probs) == set(RF1M)


def test_confidence_is_stored_and_checked(register):
    """CreativeScore.confidence is probs[predicted_label] exactly, through the upsert too, and the
    database refuses a value outside 0..1."""
    model = register()
    ids = [c.pk for c in make_creatives(2)]
    probs = np.array([[0.1, 0.6, 0.1, 0.1, 0.05, 0.05], [0.3, 0.3, 0.1, 0.1, 0.1, 0.1]])
    services.store_scores(model=model, creative_ids=ids, probs=probs)
    for score in CreativeScore.objects.filter(creative_id__in=ids):
        assert score.confidence == score.probs[score.predicted_label]
    assert CreativeScore.objects.get(creative_id=ids[0]).confidence == pytest.approx(0.6)
    # Re-scoring rewrites the column with the probabilities.
    services.store_scores(model=model, creative_ids=ids[:1], probs=probs[1:])
    first = CreativeScore.objects.get(creative_id=ids[0])
    assert first.predicted_label == "available" and first.confidence == pytest.approx(0.3)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreativeScore.objects.filter(pk=first.pk).update(confidence=1.5)


def test_confidence_backfill_from_probs(register, monkeypatch):
    """The migration's backfill (called directly) recomputes every row from probs, in batches;
    a predicted label missing from probs gives 0."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("feedback.migrations.0003_creativescore_confidence")
    model = register()
    creatives = make_creatives(5)
    for i, creative in enumerate(creatives):
        CreativeScore.objects.create(
            creative=creative,
            model=model,
            probs={"available": 0.1 * i, "unsuitable": 1 - 0.1 * i},
            p_available=0.1 * i,
            predicted_label="unsuitable" if i < 4 else "space_mismatch",
            confidence=0.0,  # stale: what a row written before the column looks like
            uncertainty=0.5,
        )
    monkeypatch.setattr(migration, "BATCH", 2)  # several batches out of five rows
    # The backfill reads only the schema editor's connection; SQLite refuses a real schema
    # editor inside the test's transaction.
    migration.backfill_confidence(apps, SimpleNamespace(connection=connection))
    got = dict(CreativeScore.objects.values_list("creative_id", "confidence"))
    assert got == pytest.approx(
        {c.pk: (1 - 0.1 * i if i < 4 else 0.0) for i, c in enumerate(creatives)}
    )


def test_summary_and_agreement_numbers():
    v = summarize([0.7, 0.1, 0.1, 0.1, 0.0, 0.0], RF1M)
    assert v["predicted_label"] == "available" and v["p_available"] == pytest.approx(0.7)
    assert v["confidence"] == v["probs"]["available"]
    assert 0 < v["uncertainty"] < 1
    assert fleiss_kappa([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    report = agreement_report([["a", "a"], ["a", "b"], ["b"]], ["a", "b", "b"])
    assert report["items"] == 2
    assert report["human_human_pairwise"] == pytest.approx(0.5)
    assert report["rfnet_human_pairwise"] == pytest.approx(0.75)
