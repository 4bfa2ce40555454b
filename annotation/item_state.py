"""The one owner of an item's derived state: initial status/priority, consensus, status and QA
selection. Pure functions of plain values (no queries, no writes): the services (submit, undo,
review, recompute), the importer's bulk rows and dataset freezing all call these, so the rules
cannot drift between the per-row and the bulk paths.

* Initial priority (queue order, lower first): `fifo` 0.0; `random` a uniform draw; `uncertainty`
  UNSCORED_PRIORITY (1.0), behind every item RFNet has scored (scores arrive as 1 - uncertainty,
  which is <= 1), FIFO among the unscored.
* Consensus: majority of the live votes; a QA-adjudicated label always wins; a tie for first place
  gives no label. Agreement is the share of votes for the returned label (top label on a tie).
* Status: a non-gold item is `done` once it has `overlap` votes, else `open`; gold items stay open
  (they are answered by many annotators and never finish).
* QA selection when an item finishes: `low_gold` (an annotator below the gold-accuracy bar voted)
  beats `disagreement` (more than one label got votes) beats `sample` (with probability
  `qa_sample_rate`). Imported finished items go through the same selection.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TypeVar

# Items of an `uncertainty` project that RFNet has not scored yet come after the scored ones.
UNSCORED_PRIORITY = 1.0
FIFO_PRIORITY = 0.0

STATUS_OPEN = "open"  # = annotation.models.Item.Status values (kept literal: no Django import)
STATUS_DONE = "done"
REVIEW_NONE = ""
REVIEW_PENDING = "pending"

K = TypeVar("K")


def initial_priority(ordering: str, *, rng: Callable[[], float] = random.random) -> float:
    """Priority of a new item in a project with this `ordering` (fifo, random, uncertainty)."""
    if ordering == "random":
        return rng()
    if ordering == "uncertainty":
        return UNSCORED_PRIORITY
    return FIFO_PRIORITY


def reset_priority_sql(ordering: str, vendor: str) -> str:
    """SQL expression for every item's priority when a project switches to `ordering`."""
    if ordering == "random":
        if vendor == "postgresql":
            return "random()"
        return "(abs(random()) % 1000000007) / 1000000007.0"  # SQLite: random() is an int64
    return repr(initial_priority(ordering))


def consensus_of(
    counts: Mapping[K, int], adjudicated: K | None = None
) -> tuple[K | None, float | None, int]:
    """(label, agreement, votes) of one item from its vote counts (keys: slugs or class ids)."""
    votes = sum(counts.values())
    if adjudicated is not None:
        return adjudicated, (counts.get(adjudicated, 0) / votes if votes else None), votes
    if not votes:
        return None, None, 0
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, ranked[0][1] / votes, votes
    return ranked[0][0], ranked[0][1] / votes, votes


def status_for(*, votes: int, overlap: int, is_gold: bool) -> str | None:
    """The item's status with this many live votes; None for gold items (status unchanged)."""
    if is_gold:
        return None
    return STATUS_DONE if votes >= overlap else STATUS_OPEN


def review_reason(
    *,
    counts: Mapping,
    low_gold: bool,
    qa_sample_rate: float,
    rng: Callable[[], float] = random.random,
) -> str:
    """Why a just-finished item goes to QA ("" = it does not)."""
    if low_gold:
        return "low_gold"
    if sum(1 for v in counts.values() if v) > 1:
        return "disagreement"
    if rng() < qa_sample_rate:
        return "sample"
    return ""


def finished_review(
    *,
    counts: Mapping,
    low_gold: bool,
    qa_sample_rate: float,
    rng: Callable[[], float] = random.random,
) -> tuple[str, str]:
    """(review_status, review_reason) of an item that has just finished."""
    reason = review_reason(counts=counts, low_gold=low_gold, qa_sample_rate=qa_sample_rate, rng=rng)
    return (REVIEW_PENDING if reason else REVIEW_NONE), reason


def new_item(
    *,
    ordering: str,
    overlap: int,
    qa_sample_rate: float,
    label=None,
    rng: Callable[[], float] = random.random,
) -> dict:
    """Every derived field of a new (non-gold) item, optionally arriving with one label already
    (an imported label): the same state the services would reach by submitting that label."""
    counts = {label: 1} if label is not None else {}
    consensus, agreement, votes = consensus_of(counts)
    status = status_for(votes=votes, overlap=overlap, is_gold=False)
    review_status, reason = REVIEW_NONE, ""
    if status == STATUS_DONE:
        review_status, reason = finished_review(
            counts=counts, low_gold=False, qa_sample_rate=qa_sample_rate, rng=rng
        )
    return {
        "status": status,
        "annotation_count": votes,
        "priority": initial_priority(ordering, rng=rng),
        "consensus": consensus,
        "agreement": agreement,
        "votes": counts,
        "review_status": review_status,
        "review_reason": reason,
    }
