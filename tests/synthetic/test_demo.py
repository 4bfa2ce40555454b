"""The synthetic manifest imports through the real pipeline, and seed_demo builds an idempotent
demo (users, roles, project, labels, gold, QA, dataset version)."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from annotation.demo import ANNOTATORS, DEMO_PASSWORD, LABEL_SOURCE, PROJECT_SLUG, seed_demo
from annotation.importing import import_manifest_file
from annotation.models import Annotation, DatasetVersion, Item, Project, Review
from core.roles import ANNOTATOR, ML_ENGINEER, QA, has_role
from generation import synthetic as sy
from generation.models import Creative, Product

pytestmark = pytest.mark.django_db


def test_manifest_imports_with_labels_and_params(tmp_path):
    manifest = sy.write_manifest(tmp_path, 12, seed=2, size=48, include_shared=False)
    result = import_manifest_file(
        manifest, project_slug="synth-import", label_source=LABEL_SOURCE, workers=1
    )
    assert (result.created, result.bad, result.labels_created) == (12, 0, 12)
    rows = {json.loads(x)["id"]: json.loads(x) for x in manifest.read_text().splitlines()}
    for creative in Creative.objects.filter(external_id__in=rows):
        row = rows[creative.external_id]
        assert creative.generator == "rfstudio-synthetic" and creative.seed == row["seed"]
        assert creative.params["box"] == row["params"]["box"]
        assert creative.product.sku == row["sku"]
        item = Item.objects.get(creative=creative)
        assert item.consensus_label.slug == row["label"]
    assert Product.objects.count() == len({r["sku"] for r in rows.values()})
    again = import_manifest_file(
        manifest, project_slug="synth-import", label_source=LABEL_SOURCE, workers=1
    )
    assert again.created == 0 and again.labels_created == 0


def test_make_synthetic_manifest_command(tmp_path, capsys):
    call_command(
        "make_synthetic_manifest",
        str(tmp_path / "out"),
        "--n",
        "5",
        "--size",
        "40",
        "--procedural-only",
    )
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(x)["label"] in sy.CLASSES for x in lines)
    assert "wrote 5 creatives" in capsys.readouterr().out
    with pytest.raises(CommandError):
        call_command("make_synthetic_manifest", str(tmp_path / "bad"), "--n", "0")
    with pytest.raises(CommandError):
        call_command("make_synthetic_manifest", str(tmp_path / "bad"), "--size", "8")


def _counts():
    return (
        get_user_model().objects.count(),
        Project.objects.count(),
        Item.objects.count(),
        Annotation.objects.count(),
        Review.objects.count(),
        DatasetVersion.objects.count(),
        Creative.objects.count(),
    )


def test_seed_demo_is_complete_and_idempotent():
    first = seed_demo(creatives=18, labeled=12, gold=3, size=48)
    User = get_user_model()
    for name in ("admin", *ANNOTATORS, "qa1", "ml1"):
        user = User.objects.get(username=name)
        assert user.check_password(DEMO_PASSWORD)
    assert User.objects.get(username="admin").is_superuser
    assert all(has_role(User.objects.get(username=n), ANNOTATOR) for n in ANNOTATORS)
    qa, ml = User.objects.get(username="qa1"), User.objects.get(username="ml1")
    assert has_role(qa, QA) and not has_role(qa, ANNOTATOR)
    assert has_role(ml, ML_ENGINEER) and ml.is_staff and not ml.is_superuser

    project = Project.objects.get(slug=PROJECT_SLUG)
    assert project.name == "RF1M demo" and project.overlap in (1, 2)
    assert project.qa_sample_rate == pytest.approx(0.2) and project.gold_rate == pytest.approx(0.05)
    assert "Shape hallucination" in project.instructions
    items = Item.objects.filter(project=project)
    assert items.count() == 21 and items.filter(is_gold=True).count() == 3
    gt = Annotation.objects.filter(item__project=project, annotator__username=LABEL_SOURCE)
    assert gt.count() == 12
    assert Annotation.objects.filter(
        item__project=project, annotator__username__in=ANNOTATORS
    ).exists()
    assert first.disagreements >= 2
    assert Review.objects.filter(item__project=project, action="relabel").exists()
    # Unlabeled items are left for the annotators.
    assert items.filter(is_gold=False, annotation_count=0).count() == 6
    version = DatasetVersion.objects.get(project=project)
    assert version.name == first.dataset_version and version.item_count > 0
    assert first.users_created and first.project_created and first.dataset_created

    before = _counts()
    second = seed_demo(creatives=18, labeled=12, gold=3, size=48)
    assert _counts() == before
    assert not second.users_created and not second.project_created and not second.dataset_created
    assert second.items_created == 0 and second.annotations_created == 0


def test_seed_demo_command_and_flush_keeps_old_data(capsys):
    call_command("seed_demo", "--creatives", "8", "--labeled", "6", "--gold", "1", "--size", "40")
    out = capsys.readouterr().out
    assert "rf1m-demo" in out and DEMO_PASSWORD in out
    old = Project.objects.get(slug=PROJECT_SLUG)
    old_labels = Annotation.objects.filter(item__project=old).count()
    call_command(
        "seed_demo",
        "--creatives",
        "8",
        "--labeled",
        "6",
        "--gold",
        "1",
        "--size",
        "40",
        "--flush-demo",
    )
    old.refresh_from_db()
    assert old.archived and old.slug.startswith("rf1m-demo-archived-")
    assert Annotation.objects.filter(item__project=old).count() == old_labels  # nothing lost
    new = Project.objects.get(slug=PROJECT_SLUG)
    assert new.pk != old.pk and Item.objects.filter(project=new).count() == 9
    assert DatasetVersion.objects.filter(project=new).exists()
    with pytest.raises(CommandError):
        call_command("seed_demo", "--creatives", "4", "--labeled", "5")
