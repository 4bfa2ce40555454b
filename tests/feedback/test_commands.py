import io
import json

import pytest
from django.core.management import CommandError, call_command

from annotation.models import DatasetItem, DatasetVersion, Item, Project
from feedback.models import CreativeScore, Evaluation, FeedbackModel

from .conftest import RF1M, synthetic_creatives


@pytest.fixture
def version(rf1m_schema):
    """A frozen dataset version of 12 synthetic creatives (rows written directly: the version is
    the input here, not what is under test)."""
    project = Project.objects.create(name="Cmd", slug="cmd", schema=rf1m_schema)
    version = DatasetVersion.objects.create(project=project, name="cmd-v1", item_count=12)
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    for (creative, label), split in zip(synthetic_creatives(4, 3, size=40), splits, strict=True):
        item = Item.objects.create(project=project, creative=creative, status="done")
        DatasetItem.objects.create(
            version=version,
            item=item,
            creative=creative,
            label=label,
            split=split,
            votes=1,
            agreement=1.0,
        )
    return version


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_evaluate_json_schema(register, version):
    model = register()
    data = json.loads(
        run(
            "evaluate_rfnet", "--model", "latest", "--dataset", "cmd-v1", "--split", "all", "--json"
        )
    )
    assert {"accuracy", "macro_f1", "per_class", "available", "confusion"} <= set(data)
    assert set(data["per_class"]) == set(RF1M)
    for row in data["per_class"].values():
        assert {"precision", "recall", "f1", "ap", "support"} <= set(row)
    assert {"precision", "recall", "f1", "ap"} <= set(data["available"])
    assert len(data["confusion"]) == 6 and all(len(r) == 6 for r in data["confusion"])
    assert sum(map(sum, data["confusion"])) == 12
    assert data["model"] == model.name
    assert Evaluation.objects.get(model=model).split == "all"


def test_command_errors(register, version):
    with pytest.raises(CommandError, match="No trained RFNet model"):
        run("evaluate_rfnet", "--model", "latest", "--dataset", "cmd-v1")
    register()
    with pytest.raises(CommandError, match="No dataset version named 'nope'"):
        run("evaluate_rfnet", "--model", "latest", "--dataset", "nope")
    with pytest.raises(CommandError, match="No RFNet model named 'ghost'"):
        run("evaluate_rfnet", "--model", "ghost", "--dataset", "cmd-v1")
    with pytest.raises(CommandError, match="No RFNet model is active"):
        run("score_creatives", "--foreground")
    with pytest.raises(CommandError, match="No dataset version"):
        run("train_rfnet", "--dataset", "nope")
    with pytest.raises(CommandError, match="epochs"):
        run("train_rfnet", "--dataset", "cmd-v1", "--epochs", "0")


def test_train_then_score_in_the_foreground(version):
    out = run(
        "train_rfnet",
        "--dataset",
        "cmd-v1",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--foreground",
    )
    model = FeedbackModel.objects.get()
    assert model.name == "rfnet-tiny-cmd-v1-1" and model.name in out
    assert model.checkpoint_path.is_dir() and model.metrics["n"] == 2
    assert model.metrics["sizes"] == {"train": 8, "val": 2, "test": 2, "missing_files": 0}
    assert model.metrics["training"]["calibration"]["val_source"] == "val"
    run("score_creatives", "--model", "latest", "--project", "cmd", "--foreground")
    assert CreativeScore.objects.filter(model=model).count() == 12
    # A second run skips what the model already scored.
    second = run("score_creatives", "--model", model.name, "--foreground")
    assert "'scored': 0" in second


def test_every_launcher_records_lineage(register, version):
    """Lineage comes from the job kind, so the CLI twin records what the admin action does."""
    from jobs.models import Job

    run("train_rfnet", "--dataset", version.name, "--preset", "tiny", "--epochs", "1")
    job = Job.objects.get(kind="rfnet_train")
    assert job.inputs == {"dataset_version": "cmd-v1", "project": "cmd"}
    assert job.input_object == version

    model = register()
    run("score_creatives", "--model", model.name, "--project", "cmd")
    job = Job.objects.get(kind="rfnet_score")
    assert job.inputs == {"model": model.name, "project": "cmd"}
    assert job.input_object == model


def test_default_epochs_count_optimizer_steps_and_early_stopping_ends_sooner(version):
    run("train_rfnet", "--dataset", "cmd-v1", "--preset", "tiny", "--batch-size", "4",
        "--patience", "1", "--foreground")  # fmt: skip
    model = FeedbackModel.objects.get()
    # 8 training creatives at batch 4: 2 steps an epoch, so the 2,000-step rule hits its cap
    assert model.config["train"]["epochs"] == 100
    assert model.config["params"].get("epochs") is None  # the job records "default"
    assert model.metrics["training"]["epochs_run"] < 100


def test_default_patience_follows_the_epochs_and_zero_turns_it_off():
    from feedback.jobs import train_config_from_params

    def config(**params):
        base = dict(epochs=None, batch_size=32, lr=1e-3, schedule="cosine", seed=0)
        return train_config_from_params(base | params, device="cpu", n_train=1900)

    default = config()
    assert (default.epochs, default.early_stopping_patience) == (34, 11)
    assert config(patience=0).early_stopping_patience is None
    assert config(patience=3).early_stopping_patience == 3
    assert (config(epochs=12).epochs, config(epochs=12).early_stopping_patience) == (12, 5)


def test_evaluation_reports_accuracy_per_family_and_mechanism(register, version):
    from django.test import Client

    from core.roles import QA
    from generation.models import Creative
    from tests.factories import PASSWORD, make_user

    creatives = list(Creative.objects.order_by("id"))
    for i, creative in enumerate(creatives[:6]):  # half carry a generator mechanism
        creative.params = {**(creative.params or {}), "mechanism": f"mech-{i % 2}"}
        creative.save(update_fields=["params"])
    model = register()
    data = json.loads(
        run(
            "evaluate_rfnet", "--model", "latest", "--dataset", "cmd-v1", "--split", "all", "--json"
        )
    )
    slices = data["slices"]
    families = {c.product.group_key for c in creatives}
    assert {r["key"] for r in slices["family"]} == families
    assert sum(r["n"] for r in slices["family"]) == 12
    assert {(r["key"], r["n"]) for r in slices["mechanism"]} == {("mech-0", 3), ("mech-1", 3)}
    # Per-family accuracies add up to the confusion matrix's diagonal, worst first.
    correct = sum(data["confusion"][i][i] for i in range(6))
    assert sum(r["n"] * r["accuracy"] for r in slices["family"]) == pytest.approx(correct)
    accuracies = [r["accuracy"] for r in slices["family"]]
    assert accuracies == sorted(accuracies)
    for r in slices["family"]:
        assert (r["confused_with"] is None) == (r["accuracy"] == 1.0)
        assert r["confused_with"] is None or r["confused_with"] in RF1M
    text = run("evaluate_rfnet", "--model", model.name, "--dataset", "cmd-v1", "--split", "all")
    assert "weakest by family" in text and "weakest by mechanism" in text
    client = Client()
    assert client.login(username=make_user(QA).username, password=PASSWORD)
    page = client.get(f"/feedback/models/{model.name}/").content.decode()
    assert "Weakest slices" in page and "mech-0" in page


def test_slice_report_leaves_out_rows_without_a_value():
    from feedback.evaluation import slice_report

    names = ["a", "b", "c"]
    report = slice_report(
        {"family": ["f1", "f1", "f2", None], "mechanism": [None, "", None, None]},
        [0, 1, 2, 0],
        [0, 2, 2, 1],
        names,
    )
    assert report == {
        "family": [
            {"key": "f1", "n": 2, "accuracy": 0.5, "confused_with": "c"},
            {"key": "f2", "n": 1, "accuracy": 1.0, "confused_with": None},
        ]
    }
