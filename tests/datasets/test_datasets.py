import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from annotation.datasets import create_dataset_version, split_groups
from annotation.models import DatasetItem, DatasetVersion, ImmutableError

from .conftest import make_voted_project

pytestmark = pytest.mark.django_db

A, U, S = "available", "unsuitable", "size_mismatch"


def rows_by_sku(version):
    return {r.creative.product.sku: r for r in version.rows.select_related("creative__product")}


def test_consensus_ties_adjudication_min_agreement_and_gold():
    project, _, _ = make_voted_project(
        [
            {"sku": "majority", "votes": [A, A, U]},
            {"sku": "unanimous", "votes": [S, S, S]},
            {"sku": "tie", "votes": [A, U], "done": True},
            {"sku": "adjudicated", "votes": [A, A, U], "adjudicated": U},
            {"sku": "three-way", "votes": [A, U, S]},
            {"sku": "open", "votes": [A]},
            {"sku": "gold-unlabeled", "votes": [], "gold": A, "done": True},
            {"sku": "gold-labeled", "votes": [U, U, U], "gold": U},
        ]
    )
    version = create_dataset_version(project=project, name="v1", ratios=(1, 0, 0))
    rows = rows_by_sku(version)
    assert set(rows) == {"majority", "unanimous", "adjudicated", "gold-labeled"}
    assert (rows["majority"].label, rows["majority"].votes) == (A, 3)
    assert rows["majority"].agreement == pytest.approx(2 / 3)
    assert rows["adjudicated"].label == U  # QA's label wins over the majority
    assert rows["gold-labeled"].label == U
    assert all(r.split == "train" for r in rows.values())
    stats = version.stats
    assert stats["excluded"] == {
        "ties": 2,  # two-way and three-way ties
        "below_min_agreement": 0,
        "gold_unlabeled": 1,
        "no_votes": 0,
        "unknown_label": 0,
    }
    assert stats["open_items"] == 1
    assert stats["class_counts"][U] == 2 and stats["class_counts"][A] == 1
    assert version.item_count == 4 and stats["items"] == 4
    assert "krippendorff_alpha" in stats["agreement"]
    assert version.params["ratios"] == [1.0, 0.0, 0.0]

    strict = create_dataset_version(project=project, name="v2", min_agreement=0.9, ratios=(1, 0, 0))
    assert set(rows_by_sku(strict)) == {"unanimous", "adjudicated", "gold-labeled"}
    assert strict.stats["excluded"]["below_min_agreement"] == 1


def test_split_is_grouped_by_sku_seedable_and_close_to_ratios():
    specs = [{"sku": f"sku-{i % 20}", "votes": [A]} for i in range(100)]
    project, _, _ = make_voted_project(specs, overlap=1)
    v1 = create_dataset_version(project=project, name="s1", seed=1)
    v2 = create_dataset_version(project=project, name="s2", seed=1)
    v3 = create_dataset_version(project=project, name="s3", seed=2)

    def assignment(v):
        out = {}
        for sku, split in v.rows.values_list("creative__product__sku", "split"):
            out.setdefault(sku, set()).add(split)
        return out

    a1 = assignment(v1)
    assert all(len(splits) == 1 for splits in a1.values())  # no product in two splits
    assert a1 == assignment(v2)
    assert a1 != assignment(v3)
    assert v1.stats["splits"]["train"]["items"] == 80
    assert v1.stats["splits"]["val"]["items"] == 10
    assert v1.stats["splits"]["test"]["items"] == 10


def test_split_groups_few_unequal_groups():
    out = split_groups({"a": 50, "b": 30, "c": 10, "d": 10}, (0.8, 0.1, 0.1), seed=0)
    assert out["a"] == "train" and out["b"] == "train"
    assert {out["c"], out["d"]} == {"val", "test"}


def test_versions_are_immutable():
    project, _, _ = make_voted_project([{"sku": "x", "votes": [A]}], overlap=1)
    version = create_dataset_version(project=project, name="frozen")
    row = version.rows.get()
    row.label = U
    with pytest.raises(ImmutableError):
        row.save()
    with pytest.raises(ImmutableError):
        version.delete()
    with pytest.raises(ImmutableError):
        DatasetItem.objects.filter(version=version).update(label=U)
    with pytest.raises(ImmutableError):
        DatasetVersion.objects.filter(pk=version.pk).delete()
    # The database itself refuses UPDATE (trigger), whatever the ORM does.
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE annotation_datasetitem SET label = 'x' WHERE id = %s", [row.id])
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE annotation_datasetversion SET name = 'y' WHERE id = %s", [version.id])
    assert DatasetItem.objects.get(pk=row.pk).label == A


def test_bad_parameters_and_duplicate_name():
    project, _, _ = make_voted_project([{"sku": "x", "votes": [A]}], overlap=1)
    create_dataset_version(project=project, name="dup")
    with pytest.raises(ValidationError, match="already exists"):
        create_dataset_version(project=project, name="dup")
    with pytest.raises(ValidationError, match="ratios"):
        create_dataset_version(project=project, name="r", ratios="0.5,0.5,0.5")
    with pytest.raises(ValidationError, match="min_agreement"):
        create_dataset_version(project=project, name="m", min_agreement=1.5)
    with pytest.raises(ValidationError, match="invalid dataset name"):
        create_dataset_version(project=project, name="bad name!")


def test_create_dataset_version_command():
    make_voted_project([{"sku": f"s{i}", "votes": [A]} for i in range(10)], overlap=1, slug="cmd")
    out = io.StringIO()
    call_command(
        "create_dataset_version",
        "--project",
        "cmd",
        "--name",
        "cmd-v1",
        "--ratios",
        "0.6,0.2,0.2",
        "--seed",
        "3",
        stdout=out,
    )
    assert out.getvalue().startswith("dataset cmd-v1: 10 items (train 6, val 2, test 2)")
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_dataset_version", "--project", "cmd", "--name", "cmd-v1")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("create_dataset_version", "--project", "nope", "--name", "x")
