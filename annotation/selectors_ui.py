"""Reads for the labeling and QA pages (annotation/views.py) that the core selectors do not cover.

Everything an annotator's page receives goes through `label_item_payload`, which deliberately
carries nothing about other people's work (no votes, consensus, notes or usernames): annotators
label blind.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from . import selectors
from .models import Annotation, Assignment, Item, Project


# --- the annotator's view --------------------------------------------------------------------
def label_progress(*, project: Project, annotator) -> dict:
    """Done today, items still open for this annotator, and own agreement with QA decisions."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    mine = Annotation.objects.filter(
        item__project=project, annotator=annotator, discarded_at__isnull=True
    )
    done_today = mine.filter(created_at__gte=start_of_day).count()
    remaining = (
        Item.objects.filter(project=project, status=Item.Status.OPEN, is_gold=False)
        .exclude(pk__in=mine.values("item_id"))
        .count()
    )
    # Agreement with QA: the annotator's label equals the final label of reviewed items
    # (accepted: the consensus; relabeled: the adjudicated label).
    reviewed = mine.filter(
        item__review_status__in=[Item.Review.ACCEPTED, Item.Review.RELABELED]
    ).annotate(final=Coalesce(F("item__adjudicated_label"), F("item__consensus_label")))
    counts = reviewed.aggregate(n=Count("id"), agree=Count("id", filter=Q(label=F("final"))))
    totals = Item.objects.filter(project=project, is_gold=False).aggregate(
        n=Count("id"), done=Count("id", filter=Q(status=Item.Status.DONE))
    )
    agreement = counts["agree"] / counts["n"] if counts["n"] else None
    return {
        "done_today": done_today,
        "remaining": remaining,
        "reviewed": counts["n"],
        "agreement": agreement,
        "agreement_percent": round(agreement * 100) if agreement is not None else None,
        "items": totals["n"],
        "items_done": totals["done"],
        "percent": round(100 * totals["done"] / totals["n"]) if totals["n"] else 0,
    }


def label_item_payload(*, assignment: Assignment) -> dict:
    """What the labeling page needs to show one leased item (and nothing about other votes)."""
    item = assignment.item
    creative = item.creative
    product = creative.product
    return {
        "item_id": item.pk,
        "lease_expires_at": assignment.expires_at.isoformat(),
        "image_url": reverse("annotation-creative-image", args=[creative.pk]),
        "width": creative.width,
        "height": creative.height,
        "prompt": creative.prompt,
        "product": {
            "sku": product.sku,
            "title": product.title,
            "image_url": reverse("annotation-product-image", args=[product.pk]),
        },
    }


def active_assignment(*, item_id: int, annotator) -> Assignment | None:
    return (
        Assignment.objects.filter(
            item_id=item_id, annotator=annotator, status=Assignment.Status.ACTIVE
        )
        .select_related("item__creative__product")
        .first()
    )


# --- QA --------------------------------------------------------------------------------------
REVIEW_REASONS = {
    "sample": "Random sample",
    "disagreement": "Annotators disagree",
    "low_gold": "Annotator below gold threshold",
}


def reason_name(item: Item) -> str:
    return REVIEW_REASONS.get(item.review_reason, item.review_reason or "Manual review")


def qa_projects():
    """Every open project with the number of items waiting for review."""
    return (
        Project.objects.filter(archived=False)
        .annotate(
            pending=Count("items", filter=Q(items__review_status=Item.Review.PENDING)),
            n_items=Count("items"),
        )
        .order_by("name")
    )


QA_PAGE = 50
PENDING_COUNT_CAP = 10_000


@dataclass
class QueuePage:
    """One page of the review queue, by id (keyset: `WHERE id > after ORDER BY id LIMIT n` on
    the partial index of pending items, so page 20,000 of a 1M-item project costs what page 1
    does)."""

    items: list
    after: int  # the page starts after this item id (0: the first page)
    next_after: int | None  # the cursor of the next page, None on the last
    pending: int  # items waiting for review in the project, counted up to PENDING_COUNT_CAP + 1

    @property
    def pending_label(self) -> str:
        return f"{PENDING_COUNT_CAP}+" if self.pending > PENDING_COUNT_CAP else str(self.pending)


def qa_queue(*, project: Project, after: int = 0, limit: int = QA_PAGE) -> QueuePage:
    """The core review queue (oldest first) with a display name for each item's reason."""
    rows = list(selectors.review_queue(project=project).filter(pk__gt=after)[: limit + 1])
    items, more = rows[:limit], len(rows) > limit
    for item in items:
        item.reason_name = reason_name(item)
    pending = len(items)
    if after or more:
        # Counted up to a cap: an exact count of a million pending items scans the whole index
        # on every page (~250 ms at 1M, bench/RESULTS.md); the page shows "10000+".
        pending = (
            Item.objects.filter(project=project, review_status=Item.Review.PENDING)
            .values("pk")[: PENDING_COUNT_CAP + 1]
            .count()
        )
    return QueuePage(
        items=items, after=after, next_after=items[-1].pk if more else None, pending=pending
    )


def qa_item_detail(*, item_id: int) -> dict:
    """All annotations of the item (discarded ones too, marked), its reviews and consensus."""
    item = selectors.item_detail(item_id=item_id)
    item.reason_name = reason_name(item)
    annotations = sorted(
        item.annotations.all(), key=lambda a: (a.discarded_at is not None, a.discarded_at, a.pk)
    )
    for a in annotations:
        a.duration_s = a.duration_ms / 1000 if a.duration_ms is not None else None
    reviews = sorted(item.reviews.all(), key=lambda r: -r.pk)[:20]
    return {
        "selected": item,
        "creative": item.creative,
        "product": item.creative.product,
        "annotations": annotations,
        "reviews": reviews,
    }
