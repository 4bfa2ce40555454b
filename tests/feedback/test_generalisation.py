"""Issue 8 on the Django side: train/serve parity, one calibrated P(available), storage API,
the val carve-out and family-grouped splits."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.roles import ML_ENGINEER
from feedback import services
from feedback.jobs import carve_out_val
from feedback.ml.data import Sample
from feedback.ml.scoring import Scorer
from feedback.models import CreativeScore
from feedback.samples import MissingFiles, check_missing, file_path, placement_of
from feedback.selectors import p_available_by_creative
from tests.factories import make_creatives, make_user

from .conftest import RF1M, synthetic_creatives


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def calibrated(register):
    """The tiny model, registered, promoted, with a non-trivial temperature beside its weights."""
    model = register()
    (model.checkpoint_path / "calibration.json").write_text(
        json.dumps({"method": "temperature", "temperature": 0.37})
    )
    return services.promote_model(model=model)


def test_parity_scoring_job_api_and_standalone_score(calibrated):
    from feedback import inference

    inference._scorers.clear()
    pairs = synthetic_creatives(2, 2, size=48)
    creatives = [c for c, _ in pairs]
    # one creative without a recorded placement: localised from the two images everywhere
    creatives[0].params = {k: v for k, v in creatives[0].params.items() if k != "placement"}
    creatives[0].save(update_fields=["params"])
    assert placement_of(creatives[0]) is None and placement_of(creatives[1]) is not None
    run("score_creatives", "--model", calibrated.name, "--foreground")
    stored = {s.creative_id: s for s in CreativeScore.objects.filter(model=calibrated)}
    assert set(stored) >= {c.pk for c in creatives}

    client = APIClient()
    client.force_authenticate(make_user(ML_ENGINEER))
    scorer = Scorer.from_pretrained(calibrated.checkpoint_path, device="cpu")
    assert scorer.calibration["temperature"] == 0.37
    for creative in creatives:
        box = placement_of(creative)
        with creative.image.open("rb") as img, creative.product.image.open("rb") as prod:
            data = {
                "image": io.BytesIO(img.read()),
                "product": io.BytesIO(prod.read()),
                "caption": creative.product.title,
                "placement": ",".join(str(v) for v in box) if box else "",
            }
        data["image"].name, data["product"].name = "c.png", "p.png"
        resp = client.post("/api/feedback/score/", data, format="multipart")
        assert resp.status_code == 200, resp.content
        api = resp.json()["results"][0]
        sample = Sample(
            file_path(creative.image),
            file_path(creative.product.image),
            caption=creative.product.title,
            placement=box,
        )
        detailed = scorer.score_detailed([sample])
        alone = detailed["probs"][0]
        db = stored[creative.pk]
        for i, slug in enumerate(RF1M):
            assert db.probs[slug] == pytest.approx(float(alone[i]), abs=2e-6)
            assert api["probs"][slug] == pytest.approx(float(alone[i]), abs=2e-6)
        # ONE P(available): calibrated column, the same in the DB, the API and score_detailed
        assert db.p_available == pytest.approx(float(detailed["p_available"][0]), abs=2e-6)
        assert api["p_available"] == pytest.approx(db.p_available, abs=2e-6)
    got = p_available_by_creative(creative_ids=[c.pk for c in creatives])
    assert got == {c.pk: stored[c.pk].p_available for c in creatives}


def test_api_rejects_a_bad_placement(calibrated):
    from tests.feedback.test_api import png

    client = APIClient()
    client.force_authenticate(make_user(ML_ENGINEER))
    resp = client.post(
        "/api/feedback/score/",
        {"image": png(), "product": png("RGBA"), "placement": "1,2,3"},
        format="multipart",
    )
    assert resp.status_code == 400 and "placement" in resp.json()["detail"]


def test_placement_never_comes_from_the_post_defect_box():
    from generation.models import Creative

    c = Creative(params={"box": [1, 2, 30, 40], "bbox": [1, 2, 3, 4]})
    assert placement_of(c) is None
    c.params["placement"] = [5, 6, 50, 60]
    assert placement_of(c) == (5.0, 6.0, 50.0, 60.0)


def test_scoring_reads_through_a_non_filesystem_storage(settings, calibrated, tmp_path):
    from django.core.files.storage import default_storage

    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    creatives = make_creatives(4)
    # InMemoryStorage answers .path() with a name that is no file: reading by path finds nothing
    assert not Path(default_storage.path(creatives[0].image.name)).exists()
    out = run("score_creatives", "--model", calibrated.name, "--foreground")
    assert "'scored': 4" in out and "'missing': 0" in out
    assert CreativeScore.objects.filter(model=calibrated).count() == 4
    # a missing file is counted, and past the threshold the job fails instead of "succeeding"
    more = make_creatives(4)
    for c in more[:2]:
        default_storage.delete(c.image.name)
    with pytest.raises(Exception, match="missing image file"):
        run("score_creatives", "--model", calibrated.name, "--foreground")
    assert not CreativeScore.objects.filter(creative__in=more[:2]).exists()


def test_missing_threshold():
    check_missing(missing=1, total=100, what="rows")
    with pytest.raises(MissingFiles, match="6 of 100 rows"):
        check_missing(missing=6, total=100, what="rows")


def test_val_carve_out_is_by_family_and_never_test():
    samples = [Sample(f"c{i}", "p", 0, group=f"fam-{i % 5}") for i in range(50)]
    train, val = carve_out_val(samples, seed=0)
    assert val and train and len(train) + len(val) == 50
    assert not {s.group for s in train} & {s.group for s in val}
    with pytest.raises(ValueError, match="single product family"):
        carve_out_val([Sample("c", "p", 0, group="one")] * 3)


def test_train_without_val_split_carves_out_of_train(register, rf1m_schema):
    """A dataset version with train + test only: calibration data come from train families."""
    from annotation import services as annotation_services
    from annotation.datasets import create_dataset_version
    from feedback.models import FeedbackModel

    from .conftest import label_items

    project = annotation_services.create_project(
        name="NoVal", slug="noval", overlap=1, qa_sample_rate=0.0
    )
    pairs = synthetic_creatives(4, 3, size=40, seed=3)
    annotation_services.add_creatives_to_project(project=project, creatives=[c for c, _ in pairs])
    label_items(project, {c.pk: lab for c, lab in pairs}, [make_user()])
    create_dataset_version(project=project, name="noval-v1", ratios=(0.75, 0.0, 0.25), seed=0)
    run(
        "train_rfnet",
        "--dataset",
        "noval-v1",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--foreground",
    )
    model = FeedbackModel.objects.get(dataset_version__name="noval-v1")
    assert model.metrics["val_source"] == "carved_from_train"
    assert model.metrics["split"] == "test"
    cal = model.metrics["training"]["calibration"]
    assert cal["val_source"] == "carved_from_train" and cal["temperature"] > 0
    assert (model.checkpoint_path / "calibration.json").exists()


def test_split_groups_by_product_family(rf1m_schema):
    from annotation import services as annotation_services
    from annotation.datasets import create_dataset_version
    from annotation.models import DatasetItem
    from tests.factories import make_product

    from .conftest import label_items

    project = annotation_services.create_project(
        name="Fam", slug="fam", overlap=1, qa_sample_rate=0.0
    )
    creatives = []
    for fam in range(6):
        for _variant in range(3):  # colourways: own SKU, one family
            product = make_product(family=f"FAM-{fam}")
            creatives += make_creatives(2, product=product)
    annotation_services.add_creatives_to_project(project=project, creatives=creatives)
    label_items(project, {c.pk: "available" for c in creatives}, [make_user()])
    version = create_dataset_version(project=project, name="fam-v1", ratios=(0.6, 0.2, 0.2))
    sides: dict[str, set] = {}
    for row in DatasetItem.objects.filter(version=version).select_related("creative__product"):
        sides.setdefault(row.creative.product.family, set()).add(row.split)
    assert len(sides) == 6 and all(len(s) == 1 for s in sides.values())
    assert len({next(iter(s)) for s in sides.values()}) > 1


def test_queue_order_mixes_a_random_share_into_uncertainty(register, rf1m_schema, settings):
    from annotation import services as annotation_services
    from annotation.models import Item

    project = annotation_services.create_project(
        name="AL", slug="al", ordering="uncertainty", qa_sample_rate=0.0
    )
    creatives = make_creatives(40)
    annotation_services.add_creatives_to_project(project=project, creatives=creatives)
    model = register()
    # creative k: P(available) falls with k, so uncertainty rises with k
    probs = np.array([[1 - 0.8 * k / 40] + [0.8 * k / 200] * 5 for k in range(40)])
    services.store_scores(model=model, creative_ids=[c.pk for c in creatives], probs=probs)
    settings.RFSTUDIO_ACTIVE_LEARNING = {"random_share": 0.0, "audit_share": 0.0}
    services.promote_model(model=model)
    pure = dict(Item.objects.filter(project=project).values_list("creative_id", "priority"))
    assert sorted(pure, key=pure.get) == [c.pk for c in reversed(creatives)]
    settings.RFSTUDIO_ACTIVE_LEARNING = {"random_share": 0.5, "audit_share": 0.0}
    assert services.apply_uncertainty_priorities(project=project) == 40
    mixed = dict(Item.objects.filter(project=project).values_list("creative_id", "priority"))
    order = sorted(mixed, key=mixed.get)
    assert sorted(order) == sorted(pure) and order != sorted(pure, key=pure.get)
    assert all(0.0 <= p < 1.0 for p in mixed.values())
