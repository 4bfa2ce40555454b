"""train_diffuser: a dataset version's `available` creatives → a registered tiny diffuser that
the generate job then uses (`--model latest`)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from core.roles import ANNOTATOR
from generation.models import DiffusionModel, Generation, Product
from jobs.models import Job
from tests.factories import make_user
from tests.feedback.conftest import label_items, synthetic_creatives

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(rf1m_schema):
    from annotation import services
    from annotation.datasets import create_dataset_version

    project = services.create_project(name="D", slug="diff-src", overlap=1, qa_sample_rate=0.0)
    pairs = synthetic_creatives(3, 2, size=48)
    services.add_creatives_to_project(project=project, creatives=[c for c, _ in pairs])
    label_items(project, {c.pk: lab for c, lab in pairs}, [make_user(ANNOTATOR)])
    return create_dataset_version(project=project, name="diff-v1", ratios=(1, 0, 0))


def test_train_then_generate_with_latest(dataset):
    call_command("train_diffuser", "--dataset", "diff-v1", "--steps", "2", "--batch-size", "2",
                 "--name", "tiny-trained", "--foreground")  # fmt: skip
    model = DiffusionModel.objects.get(name="tiny-trained")
    job = Job.objects.get(kind="train_diffuser")
    assert model.job_id == job.pk and model.lineage["dataset_version"] == "diff-v1"
    assert model.lineage["label"] == "available" and model.lineage["examples"] >= 1
    assert model.metrics["steps"] == 2 and model.config["native_size"] == 32
    assert job.artifacts.filter(name="samples.png").exists()
    sku = Product.objects.order_by("sku").first().sku
    call_command("generate_creatives", "--model", "latest", "--sku", sku, "--seeds", "0",
                 "--steps", "2", "--foreground")  # fmt: skip
    assert Generation.objects.filter(model=model).count() == 3


def test_unknown_dataset_is_refused(rf1m_schema):
    with pytest.raises(CommandError, match="No dataset version"):
        call_command("train_diffuser", "--dataset", "nope", "--foreground")
