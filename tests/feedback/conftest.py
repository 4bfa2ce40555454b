"""Feedback fixtures: a real tiny RFNet checkpoint (random weights, seeded), a registered model
and labelled projects built through annotation's services."""

from __future__ import annotations

import pytest

from tests.factories import make_creatives, make_user

RF1M = [
    "available",
    "unsuitable",
    "space_mismatch",
    "size_mismatch",
    "indistinctiveness",
    "shape_hallucination",
]

SAMPLE_METRICS = {
    "accuracy": 0.5,
    "macro_f1": 0.4,
    "per_class": {
        s: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "ap": 0.5, "support": 2} for s in RF1M
    },
    "available": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "ap": 0.5},
    "confusion": [[1 if i == j else 0 for j in range(6)] for i in range(6)],
    "ece": 0.1,
    "calibration": [{"lo": 0.0, "hi": 0.5, "count": 2, "confidence": 0.4, "accuracy": 0.5}],
    "agreement": {"items": 0},
    "history": [{"epoch": 1, "train_loss": 1.2, "val_macro_f1": 0.3}],
}


@pytest.fixture(autouse=True)
def _job_work_dir(settings, tmp_path):
    # Job ids restart with every test database: a shared work dir would "resume" old jobs.
    settings.JOBS_WORK_DIR = str(tmp_path / "work")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from feedback.ml.model import RFNet
    from feedback.ml.presets import preset

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rfnet") / "tiny"
    RFNet(preset("tiny", RF1M)).save_pretrained(path)
    return path


@pytest.fixture
def rf1m_schema(db):
    try:
        from annotation.services import get_or_create_rf1m_schema
    except ImportError:  # annotation-core not landed yet
        from annotation.models import RF1M_CLASSES, LabelClass, LabelSchema

        schema, _ = LabelSchema.objects.get_or_create(slug="rf1m", defaults={"name": "RF1M"})
        for i, (slug, name, key, desc) in enumerate(RF1M_CLASSES):
            LabelClass.objects.get_or_create(
                schema=schema,
                slug=slug,
                defaults=dict(name=name, hotkey=key, description=desc, order=i),
            )
        return schema
    return get_or_create_rf1m_schema()


@pytest.fixture
def register(rf1m_schema, tiny_checkpoint):
    from feedback import services

    def _register(prefix="rfnet-tiny-test", metrics=None, **extra):
        return services.register_model(
            name_prefix=prefix,
            schema=rf1m_schema,
            class_names=RF1M,
            source_dir=tiny_checkpoint,
            config={"preset": "tiny"},
            metrics=dict(SAMPLE_METRICS if metrics is None else metrics),
            **extra,
        )

    return _register


def label_items(project, labels: dict[int, str], annotators) -> None:
    """Every annotator labels every item of `project` through the queue, with labels[creative_id]
    (a slug, or a list of slugs, one per annotator)."""
    from annotation import services

    for k, annotator in enumerate(annotators):
        while True:
            assignment = services.claim_next_item(project=project, annotator=annotator)
            if assignment is None:
                break
            label = labels[assignment.item.creative_id]
            if isinstance(label, list | tuple):
                label = label[k]
            services.submit_annotation(
                item_id=assignment.item_id,
                annotator=annotator,
                label=label,
                idempotency_key=f"fb-{assignment.item_id}-{annotator.pk}",
            )


@pytest.fixture
def labeled_project(rf1m_schema):
    """A project of 6 creatives, one per RF1M class, each labelled by one annotator."""
    from annotation import services

    project = services.create_project(
        name="Feedback", slug="feedback-proj", overlap=1, qa_sample_rate=0.0
    )
    creatives = make_creatives(6)
    services.add_creatives_to_project(project=project, creatives=creatives)
    labels = {c.pk: RF1M[i] for i, c in enumerate(creatives)}
    label_items(project, labels, [make_user()])
    return project, creatives, labels


def synthetic_creatives(n_products: int, per_product: int, *, size: int = 48, seed: int = 0):
    """(creative, defect slug) pairs: images from generation.synthetic when it is there (so the
    labels mean something), else the shared factories' plain images with labels cycled."""
    import hashlib
    import io

    from django.core.files.base import ContentFile

    from generation.models import Creative, Product

    try:
        from generation import synthetic
    except ImportError:
        synthetic = None
    if synthetic is None:
        from tests.factories import make_creative, make_product

        out = []
        for p in range(n_products):
            product = make_product(title=f"Product {p}")
            for k in range(per_product):
                out.append((make_creative(product=product), RF1M[(p + k) % len(RF1M)]))
        return out

    import numpy as np

    rng = np.random.default_rng(seed)
    sources = synthetic.load_products()
    out = []
    for p in range(n_products):
        product_row = None
        source = sources[p % len(sources)]
        for k in range(per_product):
            defect = RF1M[(p * per_product + k) % len(RF1M)]
            example = synthetic.generate_example(rng, defect, size=size, product=source)
            if product_row is None:
                buf = io.BytesIO()
                example.product.save(buf, format="PNG")
                data = buf.getvalue()
                product_row = Product(
                    sku=f"FB-{seed}-{p}",
                    title=example.title,
                    sha256=hashlib.sha256(data).hexdigest(),
                    width=example.product.width,
                    height=example.product.height,
                )
                product_row.image.save(f"fb-{seed}-{p}.png", ContentFile(data), save=False)
                product_row.save()
            buf = io.BytesIO()
            example.image.save(buf, format="PNG")
            data = buf.getvalue()
            sha = hashlib.sha256(data).hexdigest()
            creative = Creative(
                product=product_row,
                sha256=sha,
                width=example.image.width,
                height=example.image.height,
                prompt=example.prompt,
                params=dict(example.params),
            )
            creative.image.save(f"{sha[:16]}.png", ContentFile(data), save=False)
            creative.save()
            out.append((creative, example.label))
    return out
