"""QA queue and disagreements paging at scale (issue 12): the time to build the first, a middle
and the last page of a project of N items, all finished and waiting for review, all scored by an
active RFNet model that disagrees with the consensus on half of them.

    DATABASE_URL=postgres://postgres@127.0.0.1:55432/rfstudio_harden2 \
        .venv/bin/python bench/paging.py --items 1000000

Runs against DATABASE_URL as it is (migrated first; SQLite when unset). Setup rows are
bulk-inserted through core.bulk (binary COPY on PostgreSQL) and are not timed; PostgreSQL then
runs ANALYZE. Each page is built 5 times in process with the selectors the pages use (ORM + SQL,
no HTTP; `qa_queue` includes its pending count, capped at 10,000; the disagreements page runs no
COUNT and is keyset-paged by `?after=<confidence>:<item id>`); medians are appended to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn, repeat: int = 5) -> float:
    """Median wall time of fn() in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from annotation import selectors_ui, services
    from annotation.models import Item, LabelClass
    from core import bulk
    from feedback import selectors as fb_selectors
    from feedback.models import CreativeScore, FeedbackModel
    from generation.models import Creative, Product

    call_command("migrate", "--noinput", verbosity=0)
    n, rng = args.items, random.Random(args.seed)
    tag = uuid.uuid4().hex[:8]
    setup_started = time.perf_counter()
    project = services.create_project(name=f"paging {tag}", slug=f"paging-{tag}", overlap=1)
    classes = dict(LabelClass.objects.filter(schema=project.schema).values_list("slug", "id"))
    slugs = list(classes)
    product = Product.objects.create(sku=f"paging-{tag}", image="products/x.png", sha256="0" * 64)
    with transaction.atomic():
        creative_ids = bulk.allocate_ids(Creative, n)
        bulk.insert_rows(
            Creative,
            ["id", "product", "image", "sha256", "width", "height"],
            (
                (cid, product.pk, f"creatives/{tag}/{cid}.png", f"{tag}{cid:056d}", 32, 32)
                for cid in creative_ids
            ),
        )
        item_ids = bulk.allocate_ids(Item, n)
        # Half the items carry "available" (RFNet agrees), half "unsuitable" (it disagrees).
        bulk.insert_rows(
            Item,
            ["id", "project", "creative", "status", "annotation_count", "review_status",
             "review_reason", "consensus_label", "agreement", "votes"],
            (
                (iid, project.pk, cid, "done", 1, "pending", "sample",
                 classes["available" if i % 2 else "unsuitable"], 1.0, {})
                for i, (iid, cid) in enumerate(zip(item_ids, creative_ids, strict=True))
            ),
        )  # fmt: skip
    FeedbackModel.objects.filter(schema=project.schema, status="active").update(status="retired")
    model = FeedbackModel.objects.create(
        name=f"paging-{tag}",
        schema=project.schema,
        class_names=slugs,
        checkpoint="bench",
        status="active",
    )

    def score(_):
        p = rng.uniform(0.3, 0.95)
        rest = (1 - p) / (len(slugs) - 1)
        probs = {s: (p if s == "available" else rest) for s in slugs}
        return probs, p

    with transaction.atomic():
        rows = []
        for cid in creative_ids:
            probs, p = score(cid)
            rows.append((cid, model.pk, probs, p, "available", p, 0.5))
        bulk.insert_rows(
            CreativeScore,
            [
                "creative",
                "model",
                "probs",
                "p_available",
                "predicted_label",
                "confidence",
                "uncertainty",
            ],
            rows,
        )
        del rows
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("annotation_item", "generation_creative", "feedback_creativescore"):
                cursor.execute(f"ANALYZE {table}")
    setup_seconds = time.perf_counter() - setup_started

    middle, last = item_ids[n // 2], item_ids[-51]
    results = {
        "qa first": timed(lambda: selectors_ui.qa_queue(project=project)),
        "qa middle": timed(lambda: selectors_ui.qa_queue(project=project, after=middle)),
        "qa last": timed(lambda: selectors_ui.qa_queue(project=project, after=last)),
    }
    queryset = fb_selectors.disagreements_queryset(project=project, model=model)
    total = queryset.count()  # for the description only (the page does not count)
    pages = max(1, -(-total // 50))

    def cursor(number):
        """The keyset cursor that opens page `number` (found with OFFSET here, untimed)."""
        if number <= 1:
            return None
        confidence, item_id = queryset.values_list("confidence", "pk")[(number - 1) * 50 - 1]
        return fb_selectors.DisagreementCursor(confidence, item_id)

    def page(number):
        after = cursor(number)
        # what feedback.views.disagreements does: keyset, one row more, no COUNT
        return lambda: fb_selectors.disagreements_page(project=project, model=model, after=after)

    results["disagreements first"] = timed(page(1), repeat=3)
    results["disagreements middle"] = timed(page(max(1, pages // 2)), repeat=3)
    results["disagreements last"] = timed(page(pages), repeat=3)
    vendor = connection.vendor
    lines = [
        f"\n## paging — {vendor}, {n:,} items — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n",
        f"`bench/paging.py --items {n}` (seed {args.seed}; setup {setup_seconds:.0f} s, not "
        f"timed; load average {os.getloadavg()[0]:.1f}; {total:,} disagreements, "
        f"{pages:,} pages of 50)\n",
    ]
    lines += [f"- {name}: {ms:.1f} ms (median)" for name, ms in results.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
