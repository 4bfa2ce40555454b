"""The demo data set (`manage.py seed_demo`): users of every role, one RF1M project filled with
procedural creatives (generation.synthetic), a labeled part, gold items, QA decisions and a frozen
dataset version, so every screen has something to show and RFNet can be trained at once.

Idempotent: users, products and creatives are found by name / SKU / content hash, the import skips
items already queued, and the annotator/QA phase and the dataset version run only when the project
has none yet. `flush=True` archives the current demo project under a new slug (labels are never
deleted) and seeds a fresh one.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from annotation import services
from annotation.datasets import create_dataset_version
from annotation.importing import import_manifest_file
from annotation.models import Annotation, DatasetVersion, Item, Project
from core.roles import ANNOTATOR, ML_ENGINEER, QA, ensure_roles
from generation import services as gen_services
from generation import synthetic

DEMO_PASSWORD = "demo-pass-123"
PROJECT_SLUG = "rf1m-demo"
PROJECT_NAME = "RF1M demo"
DATASET_PREFIX = "rf1m-demo-v"
LABEL_SOURCE = "synthetic-ground-truth"
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
# (username, role or "superuser", is_staff)
USERS = (
    ("admin", "superuser", True),
    *((name, ANNOTATOR, False) for name in ANNOTATORS),
    ("qa1", QA, False),
    ("ml1", ML_ENGINEER, True),  # staff: launches RFNet training from the Django admin
)
INSTRUCTIONS = """Label each generated ad image with ONE class (hotkeys 1-6).
Compare the creative with the product cut-out shown beside it.

1 Available - the product is intact, rests on a surface with a plausible shadow, has a plausible
  size for the scene and stands out from the background. The ad could run as is.
2 Unsuitable - the product is truncated or damaged: cut by the image border or a part of it is
  missing compared with the cut-out.
3 Space mismatch - the product floats above the table, hangs on the wall/sky, or its shadow is
  detached: it does not rest on anything.
4 Size mismatch - the product is far too small or far too large for the scene (compare it with
  the table, window, plants and other props).
5 Indistinctiveness - the background has the product's own colours/texture, so the product blends
  in and does not stand out.
6 Shape hallucination - the background extends the product: a pedestal, legs, a handle, a cap or
  a stretched base in the product's colours that is NOT in the cut-out.

If several defects apply, pick the most severe one in the order 2, 6, 3, 4, 5.
"""
# A demo annotator's wrong answers go to a neighbouring class, like real confusions.
CONFUSIONS = {
    "available": ["indistinctiveness", "size_mismatch"],
    "unsuitable": ["available", "shape_hallucination"],
    "space_mismatch": ["available", "size_mismatch"],
    "size_mismatch": ["available", "space_mismatch"],
    "indistinctiveness": ["available"],
    "shape_hallucination": ["available", "unsuitable"],
}


@dataclass
class DemoResult:
    users_created: list[str] = field(default_factory=list)
    project_created: bool = False
    archived: str | None = None
    items_created: int = 0
    gold_created: int = 0
    labels_imported: int = 0
    annotations_created: int = 0
    disagreements: int = 0
    reviews_created: int = 0
    dataset_version: str | None = None
    dataset_created: bool = False
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"users created: {', '.join(self.users_created) or 'none'}; "
            f"project {PROJECT_SLUG} {'created' if self.project_created else 'exists'}; "
            f"{self.items_created} new items ({self.gold_created} gold), "
            f"{self.labels_imported} ground-truth labels, "
            f"{self.annotations_created} annotator labels ({self.disagreements} disagreements), "
            f"{self.reviews_created} QA reviews; dataset {self.dataset_version or '-'}"
            f"{' created' if self.dataset_created else ''}; {self.seconds:.1f}s"
        )


def ensure_demo_users() -> tuple[dict, list[str]]:
    """The demo accounts (password DEMO_PASSWORD). Existing accounts are left as they are."""
    ensure_roles()
    User = get_user_model()
    users, created = {}, []
    for username, role, staff in USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            with transaction.atomic():
                if role == "superuser":
                    user = User.objects.create_superuser(
                        username=username, password=DEMO_PASSWORD, email=""
                    )
                else:
                    user = User.objects.create_user(
                        username=username, password=DEMO_PASSWORD, is_staff=staff
                    )
                    user.groups.add(Group.objects.get(name=role))
            created.append(username)
        users[username] = user
    return users, created


def archive_demo_project() -> str | None:
    """Move the current demo project aside (archived, renamed); nothing is deleted."""
    project = Project.objects.filter(slug=PROJECT_SLUG).first()
    if project is None:
        return None
    stamp = timezone.now().strftime("%Y%m%d%H%M%S")
    new_slug = f"{PROJECT_SLUG}-archived-{stamp}"
    Project.objects.filter(pk=project.pk).update(
        slug=new_slug, name=f"{PROJECT_NAME} (archived {stamp})", archived=True
    )
    services.audit(action="project_archive", project=project, data={"slug": new_slug})
    return new_slug


def _next_dataset_name() -> str:
    n = 1
    while DatasetVersion.objects.filter(name=f"{DATASET_PREFIX}{n}").exists():
        n += 1
    return f"{DATASET_PREFIX}{n}"


def _import_creatives(*, project, creatives, labeled, gold, size, seed, result: DemoResult):
    """Generate the manifest in a temporary folder and import it (labels of the first `labeled`
    rows under the ground-truth label source); the last `gold` examples become gold items."""
    total = creatives + gold
    ids = [synthetic.example_id(seed, i) for i in range(total)]
    have = Item.objects.filter(project=project, creative__external_id__in=ids).count()
    if have >= total:
        return
    with tempfile.TemporaryDirectory(prefix="rfstudio-demo-") as tmp:
        manifest = synthetic.write_manifest(
            tmp, total, seed, size=size, shared_dir=settings.SHARED_DIR, workers=1
        )
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        main = Path(tmp) / "demo.jsonl"
        with main.open("w") as fh:
            for i, row in enumerate(rows[:creatives]):
                if i >= labeled:
                    row.pop("label", None)
                fh.write(json.dumps(row) + "\n")
        imported = import_manifest_file(
            main, project_slug=project.slug, label_source=LABEL_SOURCE, overlap=project.overlap
        )
        result.items_created += imported.created
        result.labels_imported += imported.labels_created
        gold_labels = {}
        for row in rows[creatives:]:
            product = gen_services.get_or_create_product(
                sku=row["sku"],
                image_path=Path(tmp) / row["product_image"],
                title=row["title"],
                category=row["category"],
                family=row.get("family", ""),
            )
            creative, _ = gen_services.create_creative(
                product=product,
                image_path=Path(tmp) / row["image"],
                prompt=row["prompt"],
                negative_prompt=row["negative_prompt"],
                seed=row["seed"],
                generator=row["generator"],
                generator_version=row.get("generator_version", ""),
                params=row["params"],
                external_id=row["id"],
            )
            gold_labels[creative.pk] = row["label"]
        if gold_labels:
            n = services.add_creatives_to_project(
                project=project, creatives=list(gold_labels), gold_labels=gold_labels
            )
            result.items_created += n
            result.gold_created += n


def _annotate(*, project, users, seed, result: DemoResult, error_rate=0.08):
    """Demo annotators give every ground-truth-labeled item its second vote through the real queue
    (claim + submit), a few of them wrong; the unlabeled items are left for people."""
    annotators = [users[name] for name in ANNOTATORS]
    truth = dict(
        Annotation.objects.filter(
            item__project=project, annotator__username=LABEL_SOURCE, discarded_at__isnull=True
        ).values_list("item_id", "label__slug")
    )
    rng = random.Random(seed)
    i = idle = seen = 0
    while idle < len(annotators):
        annotator = annotators[i % len(annotators)]
        i += 1
        assignment = services.claim_next_item(project=project, annotator=annotator)
        if assignment is None:
            idle += 1
            continue
        item = assignment.item
        if item.is_gold:
            label = item.gold_label.slug
            if rng.random() < 0.15:
                label = rng.choice(CONFUSIONS[label])
        elif item.pk in truth:
            label = truth[item.pk]
            seen += 1
            # A couple of sure disagreements even in a tiny demo, then ~error_rate of them.
            if seen in (3, 7) or rng.random() < error_rate:
                label = rng.choice(CONFUSIONS[label])
                result.disagreements += 1
        else:
            # The ground-truth part is done for this annotator: the rest is for humans.
            services.skip_item(item_id=item.pk, annotator=annotator)
            idle += 1
            continue
        _, created = services.submit_annotation(
            item_id=item.pk,
            annotator=annotator,
            label=label,
            idempotency_key=f"demo-{item.pk}",
            duration_ms=rng.randint(1200, 9000),
        )
        result.annotations_created += int(created)


def _review(*, project, users, result: DemoResult, limit=12):
    """qa1 accepts some sampled items and adjudicates some disagreements (by the ground truth)."""
    reviewer = users["qa1"]
    pending = list(
        Item.objects.filter(project=project, review_status=Item.Review.PENDING).order_by("id")
    )
    truth = dict(
        Annotation.objects.filter(
            item__project=project, annotator__username=LABEL_SOURCE, discarded_at__isnull=True
        ).values_list("item_id", "label__slug")
    )
    # Half of the QA work adjudicates disagreements (the rest stay for qa1), half accepts samples.
    quota = {"disagreement": limit // 2, "sample": limit - limit // 2}
    done = 0
    for item in pending:
        reason = item.review_reason
        if quota.get(reason, 0) <= 0:
            continue
        if reason == "disagreement":
            if item.pk not in truth:
                continue
            services.review_item(
                item_id=item.pk,
                reviewer=reviewer,
                action="relabel",
                label=truth[item.pk],
                reason="demo: adjudicated",
            )
        else:
            services.review_item(item_id=item.pk, reviewer=reviewer, action="accept")
        quota[reason] -= 1
        done += 1
    result.reviews_created += done


def seed_demo(
    *,
    creatives: int = 600,
    labeled: int | None = None,
    gold: int = 12,
    size: int = 256,
    seed: int = 0,
    flush: bool = False,
    log=None,
) -> DemoResult:
    """Create (or complete) the demo; see the module docstring. `labeled` defaults to 75% of
    `creatives`."""
    began = time.perf_counter()
    result = DemoResult()
    say = log or (lambda msg: None)
    creatives = int(creatives)
    labeled = int(creatives * 3 // 4 if labeled is None else labeled)
    if creatives < 1 or not 0 <= labeled <= creatives or gold < 0:
        raise ValueError("need creatives >= 1, 0 <= labeled <= creatives and gold >= 0")
    users, result.users_created = ensure_demo_users()
    if flush:
        result.archived = archive_demo_project()
        if result.archived:
            say(f"archived the previous demo project as {result.archived}")
    project = Project.objects.filter(slug=PROJECT_SLUG).first()
    if project is None:
        project = services.create_project(
            name=PROJECT_NAME,
            slug=PROJECT_SLUG,
            overlap=2,
            created_by=users["admin"],
            qa_sample_rate=0.2,
            gold_rate=0.05,
            instructions=INSTRUCTIONS,
        )
        result.project_created = True
    say("generating and importing creatives ...")
    t = time.perf_counter()
    _import_creatives(
        project=project,
        creatives=creatives,
        labeled=labeled,
        gold=gold,
        size=size,
        seed=seed,
        result=result,
    )
    say(f"  {time.perf_counter() - t:.1f}s")
    demo_labels = Annotation.objects.filter(
        item__project=project, annotator__username__in=ANNOTATORS
    ).exists()
    if not demo_labels and labeled:
        say("demo annotators labeling, QA reviewing ...")
        t = time.perf_counter()
        _annotate(project=project, users=users, seed=seed, result=result)
        _review(project=project, users=users, result=result)
        say(f"  {time.perf_counter() - t:.1f}s")
    version = DatasetVersion.objects.filter(project=project).order_by("created_at").first()
    if version is None and labeled:
        version = create_dataset_version(
            project=project, name=_next_dataset_name(), seed=seed, created_by=users["ml1"]
        )
        result.dataset_created = True
    result.dataset_version = version.name if version else None
    if version is not None:
        _enqueue_demo_diffuser(version=version, user=users["ml1"], say=say)
    from .signals import demo_seeded

    demo_seeded.send(sender=seed_demo, project=project, seed=seed, log=say)
    result.seconds = time.perf_counter() - began
    return result


def _enqueue_demo_diffuser(*, version, user, say) -> None:
    """Queue (once per dataset version) training of the tiny diffusion base on the demo's
    `available` creatives; the demo worker runs it in the background (make demo never waits)."""
    from django.core.exceptions import ValidationError

    from jobs.services import enqueue_job

    try:
        job = enqueue_job(
            kind="train_diffuser",  # generation's kind, by name
            params={"dataset": version.name, "label": "available", "preset": "tiny",
                    "steps": 1500, "max_minutes": 20, "name": f"demo-tiny-{version.name}"},
            requested_by=user,
            idempotency_key=f"demo-train-diffuser-{version.name}",
        )  # fmt: skip
    except ValidationError as exc:  # e.g. generation not installed: the demo works without it
        say(f"tiny diffuser not queued: {' '.join(exc.messages)}")
        return
    say(f"tiny diffuser training queued: job #{job.pk} (/jobs/{job.pk}/)")
