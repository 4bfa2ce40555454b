"""Write paths of the annotation queue. Keyword-only functions; each owns its transaction.

Concurrency (details in docs/annotation-core.md):
* claim: ONE statement, `INSERT INTO assignment ... SELECT ... ORDER BY priority, id LIMIT 1
  [FOR UPDATE OF item SKIP LOCKED] RETURNING ...`, in autocommit. Its WHERE reads only item
  columns (`annotation_count`, `lease_count`, `lease_expires_at`) which a trigger updates in the
  same statement, so on PostgreSQL a concurrent claimer either skips the locked row or re-checks
  the new row version. On SQLite a write statement takes the single writer lock before it reads.
* queue position: with overlap > 1 the claim starts after the annotator's last claim (cursor).
  Every rewrite of item priorities bumps `Project.priority_epoch` first, in the rewrite's
  transaction (the project row lock also serialises two rewrites of one project); the claim
  statement stamps the epoch it read on the lease, and only leases of the current epoch count as
  a cursor, so a rewrite sends every annotator back to the new top (docs/architecture.md).
* submit / undo / review / heartbeat slow paths: `transaction.atomic(savepoint=False)` with the
  item row locked (`SELECT ... FOR UPDATE` on PostgreSQL; BEGIN IMMEDIATE on SQLite, which the
  settings use for every transaction).
Audit events for claim/skip/expire/submit are written by triggers (migration 0004); the others
here, one INSERT each.
"""

from __future__ import annotations

import datetime
import math
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from core import limits, policy
from core.prepared import PreparedQuery

from . import item_state
from .exceptions import (
    AnnotationError,
    Forbidden,
    IdempotencyKeyReused,
    InvalidLabel,
    InvalidReview,
    LeaseConflict,
    NotFound,
    ReviewConflict,
)
from .models import (
    RF1M_CLASSES,
    Annotation,
    AnnotatorGoldStats,
    Assignment,
    AuditEvent,
    Item,
    LabelClass,
    LabelSchema,
    Project,
    Review,
)
from .schema_cache import schema_choices

RF1M_SCHEMA_SLUG = "rf1m"
LOW_GOLD_ACCURACY = 0.7
LOW_GOLD_MIN_ANSWERS = 5
UNSCORED_PRIORITY = item_state.UNSCORED_PRIORITY  # rules of an item's state: item_state.py
PROJECT_SETTINGS = {
    "lease_seconds",
    "instructions",
    "qa_sample_rate",
    "gold_rate",
    "ordering",
    "archived",
}
_CHUNK = 2000


def audit(*, action: str, project=None, item_id=None, actor=None, data=None) -> None:
    """One INSERT. The table refuses UPDATE/DELETE (triggers)."""
    AuditEvent.objects.create(
        project_id=getattr(project, "pk", project),
        item_id_ref=item_id,
        actor_id=getattr(actor, "pk", actor),
        action=action,
        data=data or {},
    )


def _in_transaction(fn, /, **kwargs):
    """Run fn in `atomic(savepoint=False)` (no SAVEPOINT round trips when nested). Domain errors
    are raised only before any write; they leave the block normally so that a caller's outer
    transaction is not marked broken, and are re-raised here."""
    error = None
    with transaction.atomic(savepoint=False):
        try:
            result = fn(**kwargs)
        except AnnotationError as exc:
            error = exc
    if error is not None:
        raise error
    return result


# --- projects and items ---------------------------------------------------------------------


def get_or_create_rf1m_schema() -> LabelSchema:
    schema, _ = LabelSchema.objects.get_or_create(
        slug=RF1M_SCHEMA_SLUG, defaults={"name": "RF1M (ECCV 2024)"}
    )
    if not schema.classes.exists():
        LabelClass.objects.bulk_create(
            [
                LabelClass(
                    schema=schema, slug=slug, name=name, hotkey=key, description=desc, order=i
                )
                for i, (slug, name, key, desc) in enumerate(RF1M_CLASSES)
            ],
            ignore_conflicts=True,
        )
    return schema


def create_project(
    *, name, slug, overlap=1, schema=None, created_by=None, annotators=None, **settings
) -> Project:
    """Raises django ValidationError naming the bad field (unknown setting, bad rate, ...)."""
    unknown = set(settings) - PROJECT_SETTINGS
    if unknown:
        raise ValidationError(f"Unknown project settings: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        project = Project(
            name=name,
            slug=slug,
            overlap=overlap,
            schema=schema or get_or_create_rf1m_schema(),
            created_by=created_by,
            **settings,
        )
        project.full_clean()
        project.save()
        if annotators:
            project.annotators.set(annotators)
        audit(
            action="project_create",
            project=project,
            actor=created_by,
            data={"slug": slug, "overlap": overlap, **{k: str(v) for k, v in settings.items()}},
        )
    return project


def add_creatives_to_project(*, project, creatives, gold_labels=None, actor=None) -> int:
    """Queue creatives (instances or ids); already queued ones are skipped. `gold_labels` maps
    creative id -> label slug for gold items. Returns the number of new items."""
    ids = [getattr(c, "pk", c) for c in creatives]
    gold_labels = gold_labels or {}
    choices = schema_choices(project.schema_id)
    bad = {s for s in gold_labels.values() if s not in choices.by_slug}
    if bad:
        raise InvalidLabel(
            f"Unknown gold label(s) {', '.join(sorted(bad))}; "
            f"choose from {', '.join(choices.by_slug)}"
        )
    created = 0
    with transaction.atomic():
        for start in range(0, len(ids), _CHUNK):
            chunk = list(dict.fromkeys(ids[start : start + _CHUNK]))
            existing = set(
                Item.objects.filter(project=project, creative_id__in=chunk).values_list(
                    "creative_id", flat=True
                )
            )
            new = [
                Item(
                    project=project,
                    creative_id=cid,
                    priority=item_state.initial_priority(project.ordering),
                    is_gold=cid in gold_labels,
                    gold_label_id=(
                        choices.by_slug[gold_labels[cid]].id if cid in gold_labels else None
                    ),
                )
                for cid in chunk
                if cid not in existing
            ]
            Item.objects.bulk_create(new, batch_size=1000)
            created += len(new)
        audit(
            action="add_items",
            project=project,
            actor=actor,
            data={"created": created, "gold": len(gold_labels)},
        )
    return created


def _bump_priority_epoch(project) -> None:
    """The one owner of "priorities changed": call first inside every transaction that rewrites
    existing items' priorities. The UPDATE takes the project row lock (two rewrites of one
    project run one after the other) and makes every annotator's queue cursor stale at commit."""
    Project.objects.filter(pk=project.pk).update(priority_epoch=F("priority_epoch") + 1)


def set_item_priorities(*, project, priorities: dict) -> int:
    """Queue order for `uncertainty` projects: {item id: priority}, lower first (feedback writes
    the active-learning order, position / n). Items of other projects are ignored. Every
    annotator's queue position restarts from the new top (see `_bump_priority_epoch`)."""
    rows = []
    for item_id, value in priorities.items():
        value = float(value)
        if not math.isfinite(value):
            raise ValidationError(f"Priority of item {item_id} must be a finite number.")
        rows.append((int(item_id), value))
    if not rows:
        return 0
    it = Item._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        _bump_priority_epoch(project)
        # One statement (PostgreSQL) / primary-key updates (SQLite): the item rows stay locked
        # from here to COMMIT, and claimers SKIP LOCKED past them meanwhile, so keep it short.
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {it} SET priority = v.p FROM unnest(%s::bigint[], %s::float8[])"
                f" AS v(id, p) WHERE {it}.id = v.id AND {it}.project_id = %s",
                [[r[0] for r in rows], [r[1] for r in rows], project.pk],
            )
            updated = cursor.rowcount
        else:
            cursor.executemany(
                f"UPDATE {it} SET priority = %s WHERE id = %s AND project_id = %s",
                [(value, item_id, project.pk) for item_id, value in rows],
            )
            updated = cursor.rowcount
        audit(action="set_priorities", project=project, data={"items": updated})
    return updated


def set_project_ordering(*, project, ordering: str, actor=None) -> Project:
    """Switch the queue order; `random` draws a fresh random priority for every item, `fifo`
    and `uncertainty` reset them (scores then come from feedback's uncertainty priorities)."""
    if ordering not in Project.Ordering.values:
        raise ValidationError(
            f"Unknown ordering {ordering!r}; use one of {Project.Ordering.values}"
        )
    with transaction.atomic():
        _bump_priority_epoch(project)
        Project.objects.filter(pk=project.pk).update(ordering=ordering)
        project.ordering = ordering
        # Uncertainty: until an item is scored it waits behind the scored ones, FIFO among its
        # peers, rather than keep a priority that meant something else (a random draw).
        expr = item_state.reset_priority_sql(ordering, connection.vendor)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Item._meta.db_table} SET priority = {expr} WHERE project_id = %s",
                [project.pk],
            )
        audit(action="set_ordering", project=project, actor=actor, data={"ordering": ordering})
    return project


def set_project_overlap(*, project, overlap: int, actor=None) -> Project:
    """Change how many labels each item needs. Raising it sends finished items that QA has not
    decided yet (no review, or one pending) back to the queue for more labels; lowering it
    finishes the open items that already have enough (consensus, status and QA selection from
    item_state, like a submit). QA-accepted or relabeled items are left as they are.

    Concurrency: the project row is locked for the change, so two admins do not interleave;
    in-flight submits re-read the overlap under their item lock, and the claim reads it per call.
    """
    if isinstance(overlap, bool) or not isinstance(overlap, int):
        raise ValidationError("overlap must be an integer")
    if not 1 <= overlap <= limits.max_overlap():  # RFSTUDIO_MAX_OVERLAP, the importer's bound too
        raise ValidationError(f"overlap must be between 1 and {limits.max_overlap()}")
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        old = locked.overlap
        if old == overlap:
            return project
        Project.objects.filter(pk=project.pk).update(overlap=overlap)
        project.overlap = overlap
        reopened = 0
        if overlap > old:
            reopened = Item.objects.filter(
                project=project,
                is_gold=False,
                status=Item.Status.DONE,
                annotation_count__lt=overlap,
                review_status__in=[Item.Review.NONE, Item.Review.PENDING],
            ).update(
                status=Item.Status.OPEN,
                review_status=Item.Review.NONE,
                review_reason="",
                updated_at=timezone.now(),
            )
        audit(
            action="set_overlap",
            project=project,
            actor=actor,
            data={"from": old, "to": overlap, "reopened": reopened},
        )
    if overlap < old:
        finishing = Item.objects.filter(
            project=project,
            is_gold=False,
            status=Item.Status.OPEN,
            annotation_count__gte=overlap,
        ).values_list("pk", flat=True)
        recompute_items(item_ids=list(finishing))
    return project


# --- the claim ------------------------------------------------------------------------------

_claim_sql_cache: dict[tuple, str] = {}


def _claim_sql(*, gold: bool, multi: bool, use_cursor: bool, n_exclude: int, lock: bool) -> str:
    """The claim statement; see the module docstring. Parameters (in order) are produced by
    `_claim_params` with the same flags."""
    key = (gold, multi, use_cursor, n_exclude, lock, connection.vendor)
    sql = _claim_sql_cache.get(key)
    if sql is not None:
        return sql
    a, it, an = (
        Assignment._meta.db_table,
        Item._meta.db_table,
        Annotation._meta.db_table,
    )
    excl = ", ".join(["%s"] * n_exclude)
    # The project's priority epoch, read in the statement's snapshot (the same one that orders
    # by priority) and stamped on the lease: an uncorrelated subquery, evaluated once.
    epoch = f"(SELECT pe.priority_epoch FROM {Project._meta.db_table} pe WHERE pe.id = %s)"
    parts = [
        f"INSERT INTO {a} (item_id, project_id, annotator_id, status, expires_at, created_at,"
        " updated_at, priority_epoch)",
        f"SELECT i.id, i.project_id, %s, 'active', %s, %s, %s, {epoch}",
        f"FROM {it} i",
    ]
    if gold:
        # Gold items: any number of annotators at once, each sees one at most once.
        parts += [
            "WHERE i.project_id = %s AND i.is_gold",
            f"AND NOT EXISTS (SELECT 1 FROM {a} m WHERE m.item_id = i.id AND m.annotator_id = %s)",
        ]
    else:
        parts += [
            "WHERE i.project_id = %s AND i.status = 'open' AND NOT i.is_gold",
            # Free slot, counted on the item row itself (see module docstring).
            "AND (i.annotation_count + i.lease_count < %s OR i.lease_expires_at < %s)",
            f"AND NOT EXISTS (SELECT 1 FROM {a} m WHERE m.item_id = i.id AND m.annotator_id = %s"
            " AND m.status IN ('active', 'skipped'))",
        ]
        if multi:
            parts.append(
                f"AND NOT EXISTS (SELECT 1 FROM {an} n WHERE n.item_id = i.id"
                " AND n.annotator_id = %s AND n.discarded_at IS NULL)"
            )
        if use_cursor:
            # Overlap > 1: start after this annotator's last claim so that the items they
            # already labeled (still open, waiting for others) are not re-scanned every time.
            # Only a claim of the current priority epoch is a position: after a rewrite the
            # annotator starts again from the new top.
            last = (
                f"FROM {a} ca JOIN {it} ci ON ci.id = ca.item_id WHERE ca.annotator_id = %s"
                f" AND ca.project_id = %s AND ca.priority_epoch = {epoch}"
                " AND NOT ci.is_gold ORDER BY ca.id DESC LIMIT 1"
            )
            parts.append(
                f"AND (i.priority, i.id) > (COALESCE((SELECT ci.priority {last}), -1e300),"
                f" COALESCE((SELECT ci.id {last}), 0))"
            )
    if n_exclude:
        parts.append(f"AND i.id NOT IN ({excl})")
    # Reuse: an annotator with a live lease (outside `exclude`) gets that one back instead.
    live = (
        f"AND NOT EXISTS (SELECT 1 FROM {a} l WHERE l.annotator_id = %s AND l.project_id = %s"
        " AND l.status = 'active' AND l.expires_at > %s"
    )
    parts.append(live + (f" AND l.item_id NOT IN ({excl}))" if n_exclude else ")"))
    parts.append("ORDER BY i.id LIMIT 1" if gold else "ORDER BY i.priority, i.id LIMIT 1")
    if lock and not gold:
        parts.append("FOR UPDATE OF i SKIP LOCKED")
    parts.append("RETURNING id, item_id, expires_at")
    sql = "\n".join(parts)
    _claim_sql_cache[key] = sql
    return sql


def _claim_params(*, gold, multi, use_cursor, exclude, project, user_id, now, expires):
    ops = connection.ops
    now_db = ops.adapt_datetimefield_value(now)
    params = [user_id, ops.adapt_datetimefield_value(expires), now_db, now_db, project.pk]
    params.append(project.pk)
    if gold:
        params.append(user_id)
    else:
        params += [project.overlap, now_db, user_id]
        if multi:
            params.append(user_id)
        if use_cursor:
            params += [user_id, project.pk, project.pk] * 2
    params += list(exclude)
    params += [user_id, project.pk, now_db]
    params += list(exclude)
    return params


def _run_claim(*, project, annotator, now, expires, gold, use_cursor, exclude):
    multi = project.overlap > 1
    sql = _claim_sql(
        gold=gold,
        multi=multi,
        use_cursor=use_cursor,
        n_exclude=len(exclude),
        lock=connection.features.has_select_for_update_skip_locked,
    )
    params = _claim_params(
        gold=gold,
        multi=multi,
        use_cursor=use_cursor,
        exclude=exclude,
        project=project,
        user_id=annotator.pk,
        now=now,
        expires=expires,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except IntegrityError:
        # The same annotator claimed the same item in a parallel request (unique active lease).
        return None


def _assignment_with_item(*, row, project, annotator) -> Assignment:
    assignment_id, item_id, expires_at = row
    if isinstance(expires_at, str):  # SQLite RETURNING gives the stored text ...
        expires_at = Assignment._meta.get_field("expires_at").to_python(expires_at)
    if timezone.is_naive(expires_at):  # ... or a naive UTC datetime
        expires_at = timezone.make_aware(expires_at, datetime.UTC)
    item = ITEM_WITH_CREATIVE.first(pk=item_id)
    item.project = project
    assignment = Assignment(
        id=assignment_id,
        item=item,
        project=project,
        annotator=annotator,
        status=Assignment.Status.ACTIVE,
        expires_at=expires_at,
    )
    return assignment


def claim_next_item(*, project, annotator, exclude_item_ids: Sequence[int] = ()):
    """Lease the next item for `annotator` (reusing their own live lease), or None when the queue
    is empty for them. `exclude_item_ids`: items the caller already holds (prefetch)."""
    now = timezone.now()
    expires = now + timedelta(seconds=project.lease_seconds)
    exclude = tuple(int(i) for i in exclude_item_ids)
    common = dict(project=project, annotator=annotator, now=now, expires=expires, exclude=exclude)
    row = None
    if project.gold_rate > 0 and random.random() < project.gold_rate:
        row = _run_claim(gold=True, use_cursor=False, **common)
    if row is None:
        row = _run_claim(gold=False, use_cursor=project.overlap > 1, **common)
    if row is None:
        live = (
            Assignment.objects.select_related("item__creative__product")
            .filter(
                annotator=annotator,
                project=project,
                status=Assignment.Status.ACTIVE,
                expires_at__gt=now,
            )
            .exclude(item_id__in=exclude)
            .order_by("-id")
            .first()
        )
        if live is not None:
            live.item.project = project
            live.project = project
            return live
        if project.overlap > 1:  # wrap around: items before the cursor
            row = _run_claim(gold=False, use_cursor=False, **common)
    if row is None:
        return None
    return _assignment_with_item(row=row, project=project, annotator=annotator)


def _membership(project_ref: str, user_id) -> dict:
    """`has_members` / `is_member` annotations for core.policy.is_member (no extra query)."""
    through = Project.annotators.through
    return {
        "has_members": Exists(through.objects.filter(project_id=OuterRef(project_ref))),
        "is_member": Exists(
            through.objects.filter(project_id=OuterRef(project_ref), user_id=user_id)
        ),
    }


def _check_may_label(annotator, assignment) -> None:
    """core.policy on the lease's project: a removed member or an archived project keeps no lease
    (heartbeat, submit and skip all refuse with 403; nothing is re-let)."""
    project = assignment.project
    project.has_members = assignment.has_members
    project.is_member = assignment.is_member
    if not policy.can_label_project(annotator, project):
        if project.archived:
            raise Forbidden("This project is archived.")
        raise Forbidden("You are not an annotator of this project.")


def authorize_item(*, item_id, user, rule: str = "label") -> None:
    """core.policy on the item's project (one query): NotFound, or Forbidden when `rule` ("label"
    or "review") refuses. The hot paths check on the rows they lock instead; this serves the
    paths that have no lease to look at (no lease, invalid input)."""
    project = (
        Project.objects.filter(items__pk=item_id).annotate(**_membership("pk", user.pk)).first()
    )
    if project is None:
        raise NotFound(f"Item {item_id} does not exist.")
    allowed = (
        policy.can_label_project(user, project)
        if rule == "label"
        else policy.can_review_project(user, project)
    )
    if not allowed:
        if project.archived:
            raise Forbidden("This project is archived.")
        raise Forbidden("You may not do this in this project.")


def _my_assignment(item_id, annotator):
    return (
        Assignment.objects.select_related("project")
        .annotate(**_membership("project_id", annotator.pk))
        .filter(item_id=item_id, annotator=annotator)
        .order_by("-id")
        .first()
    )


def renew_lease(*, item_id, annotator) -> Assignment:
    """Heartbeat: extend the annotator's lease. A lease that ran out is renewed when nobody took
    the slot meanwhile; otherwise LeaseConflict. Forbidden when core.policy no longer lets the
    annotator label the project."""
    now = timezone.now()
    assignment = _my_assignment(item_id, annotator)
    if assignment is None:
        authorize_item(item_id=item_id, user=annotator)
    else:
        _check_may_label(annotator, assignment)
    if assignment is None or assignment.status not in (
        Assignment.Status.ACTIVE,
        Assignment.Status.EXPIRED,
    ):
        raise LeaseConflict("This item is not leased to you.")
    expires = now + timedelta(seconds=assignment.project.lease_seconds)
    if assignment.status == Assignment.Status.ACTIVE:
        # Conditional: a claimer may expire this lease concurrently (then 0 rows).
        n = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.ACTIVE).update(
            expires_at=expires, updated_at=now
        )
        if n:
            assignment.expires_at = expires
            return assignment

    def relet():
        item = _lock_item(item_id)
        if _free_slots(item=item, project=assignment.project, annotator=annotator, now=now) <= 0:
            raise LeaseConflict("Your lease expired and the item was given to someone else.")
        return Assignment.objects.create(
            item=item,
            project=assignment.project,
            annotator=annotator,
            status=Assignment.Status.ACTIVE,
            expires_at=expires,
        )

    return _in_transaction(relet)


def skip_item(*, item_id, annotator) -> None:
    """Give the item back; it is not offered to this annotator again."""
    assignment = _my_assignment(item_id, annotator)
    if assignment is None:
        authorize_item(item_id=item_id, user=annotator)
    else:
        _check_may_label(annotator, assignment)
    n = Assignment.objects.filter(
        item_id=item_id, annotator=annotator, status=Assignment.Status.ACTIVE
    ).update(status=Assignment.Status.SKIPPED, updated_at=timezone.now())
    if not n:
        raise LeaseConflict("This item is not leased to you.")


def expire_leases(*, now=None) -> int:
    """Mark leases that ran out as expired (a sweep; claims also expire them item by item)."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=Assignment.Status.ACTIVE, expires_at__lt=now).update(
        status=Assignment.Status.EXPIRED, updated_at=now
    )


# --- submit ---------------------------------------------------------------------------------


def _lock_item(item_id) -> Item:
    item = Item.objects.select_for_update().select_related("project").filter(pk=item_id).first()
    if item is None:
        raise NotFound(f"Item {item_id} does not exist.")
    return item


def _free_slots(*, item, project, annotator, now) -> int:
    """Slots not taken by annotations or by other annotators' live leases (item locked)."""
    if item.is_gold:
        return 1
    others = (
        Assignment.objects.filter(item=item, status=Assignment.Status.ACTIVE, expires_at__gt=now)
        .exclude(annotator=annotator)
        .count()
    )
    return project.overlap - item.annotation_count - others


def _item_state(*, item, project, votes: dict) -> dict:
    """Derived fields for an item with these current votes (rules: item_state.py)."""
    choices = schema_choices(project.schema_id)
    adjudicated = choices.by_id.get(item.adjudicated_label_id)
    label, agreement, count = item_state.consensus_of(
        votes, adjudicated.slug if adjudicated else None
    )
    state = {
        "votes": votes,
        "annotation_count": count,
        "consensus_label_id": choices.by_slug[label].id if label in choices.by_slug else None,
        "agreement": agreement,
    }
    status = item_state.status_for(votes=count, overlap=project.overlap, is_gold=item.is_gold)
    if status is not None:
        state["status"] = status
    return state


def _check_key(idempotency_key) -> str:
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise AnnotationError("`idempotency_key` is required.")
    if len(idempotency_key) > 100:
        raise AnnotationError("`idempotency_key` must be at most 100 characters.")
    return idempotency_key


def _replay(*, annotation_id=None, annotator, key, item_id):
    qs = Annotation.objects.filter(annotator=annotator)
    ann = (
        qs.filter(pk=annotation_id).first()
        if annotation_id
        else qs.filter(idempotency_key=key).first()
    )
    if ann is None:
        return None
    if ann.item_id != int(item_id):
        raise IdempotencyKeyReused(f"This idempotency key was already used for item {ann.item_id}.")
    return ann


def submit_annotation(
    *, item_id, annotator, label: str, idempotency_key: str, duration_ms=None, note=""
):
    """Store the annotator's label for a leased item: (annotation, created). A replay with the
    same idempotency key returns the stored annotation with created=False."""
    key = _check_key(idempotency_key)
    if duration_ms is not None and (
        isinstance(duration_ms, bool)
        or not isinstance(duration_ms, int)
        or not 0 <= duration_ms <= limits.max_duration_ms()
    ):
        raise AnnotationError(
            f"`duration_ms` must be an integer between 0 and {limits.max_duration_ms()}."
        )
    if note and len(note) > limits.max_note_length():
        raise AnnotationError(f"`note` must be at most {limits.max_note_length()} characters.")
    now = timezone.now()
    try:
        return _in_transaction(
            _submit_locked,
            item_id=item_id,
            annotator=annotator,
            label=label,
            key=key,
            duration_ms=duration_ms,
            note=note or "",
            now=now,
        )
    except IntegrityError:
        # A parallel request with the same key (or a second label by the same annotator) won.
        ann = _replay(annotator=annotator, key=key, item_id=item_id)
        if ann is not None:
            return ann, False
        raise LeaseConflict("You already labeled this item.")


def _lease_for_submit(item_id, annotator_id, key):
    qs = (
        Assignment.objects.filter(item_id=item_id, annotator_id=annotator_id)
        .select_related("item", "item__project")
        .annotate(
            **_membership("project_id", annotator_id),
            replay_id=Subquery(
                Annotation.objects.filter(annotator_id=annotator_id, idempotency_key=key).values(
                    "id"
                )[:1]
            ),
            low_gold=Exists(
                AnnotatorGoldStats.objects.filter(
                    project_id=OuterRef("project_id"), annotator_id=annotator_id, is_low=True
                )
            ),
        )
        .order_by("-id")
    )
    if connection.features.has_select_for_update:
        qs = qs.select_for_update(of=("item",))
    return qs[:1]


# Compiled once per connection (inside the submit transaction, as FOR UPDATE requires).
LEASE_FOR_SUBMIT = PreparedQuery(_lease_for_submit, ints=("item_id", "annotator_id"))
ITEM_WITH_CREATIVE = PreparedQuery(
    lambda pk: Item.objects.select_related("creative__product").filter(pk=pk)[:1], ints=("pk",)
)


def _submit_locked(*, item_id, annotator, label, key, duration_ms, note, now):
    # query 1: lease + locked item + project + replay + gold flag
    assignment = LEASE_FOR_SUBMIT.first(item_id=item_id, annotator_id=annotator.pk, key=key)
    if assignment is None:
        ann = _replay(annotator=annotator, key=key, item_id=item_id)
        if ann is not None:
            return ann, False
        authorize_item(item_id=item_id, user=annotator)
        raise LeaseConflict("This item is not leased to you. Ask for the next item.")
    if assignment.replay_id:
        return _replay(
            annotation_id=assignment.replay_id, annotator=annotator, key=key, item_id=item_id
        ), False
    item = assignment.item
    project = item.project
    assignment.project = project
    _check_may_label(annotator, assignment)
    choices = schema_choices(project.schema_id)
    choice = choices.by_slug.get(label) if isinstance(label, str) else None
    if choice is None:
        raise InvalidLabel(f"Unknown label {label!r}; choose one of: {', '.join(choices.by_slug)}.")
    status = assignment.status
    if status == Assignment.Status.SUBMITTED:
        raise LeaseConflict("You already labeled this item.")
    if status == Assignment.Status.SKIPPED:
        raise LeaseConflict("You skipped this item; ask for the next one.")
    if not item.is_gold and item.annotation_count >= project.overlap:
        raise LeaseConflict("This item already has all the labels it needs.")
    live = status == Assignment.Status.ACTIVE and assignment.expires_at > now
    if not live and _free_slots(item=item, project=project, annotator=annotator, now=now) <= 0:
        raise LeaseConflict("Your lease expired and the item was given to someone else.")

    # query 2 (triggers: lease -> submitted, audit "submit")
    ann = Annotation.objects.create(
        item=item,
        annotator=annotator,
        label_id=choice.id,
        idempotency_key=key,
        duration_ms=duration_ms,
        note=note,
    )
    votes = dict(item.votes or {})
    if sum(votes.values()) != item.annotation_count:  # rows written outside services: rebuild
        votes = _votes_from_db(item.pk, exclude_id=ann.pk)
    votes[label] = votes.get(label, 0) + 1
    fields = _item_state(item=item, project=project, votes=votes)
    fields["updated_at"] = now
    if item.is_gold:
        _record_gold_answer(
            project=project, annotator=annotator, correct=choice.id == item.gold_label_id
        )
    else:
        flagged = item.flagged_low_gold or assignment.low_gold
        fields["flagged_low_gold"] = flagged
        if fields["status"] == Item.Status.DONE:
            fields["review_status"], fields["review_reason"] = item_state.finished_review(
                counts=votes, low_gold=flagged, qa_sample_rate=project.qa_sample_rate
            )
    Item.objects.filter(pk=item.pk).update(**fields)  # query 3
    for name, value in fields.items():
        setattr(item, name, value)
    ann.item = item
    return ann, True


def _votes_from_db(item_id, exclude_id=None) -> dict:
    qs = Annotation.objects.filter(item_id=item_id, discarded_at__isnull=True)
    if exclude_id:
        qs = qs.exclude(pk=exclude_id)
    return dict(Counter(qs.values_list("label__slug", flat=True)))


def recompute_items(*, item_ids: Iterable[int]) -> int:
    """Rebuild counters, votes, consensus and status of items from their annotations (imports,
    admin repairs). An item that finishes here is selected for QA like a submit would (rules:
    item_state.finished_review); other review state is left alone."""
    n = 0
    for item_id in item_ids:
        with transaction.atomic(savepoint=False):
            item = Item.objects.select_for_update().select_related("project").get(pk=item_id)
            votes = _votes_from_db(item.pk)
            fields = _item_state(item=item, project=item.project, votes=votes)
            if (
                fields.get("status") == Item.Status.DONE
                and item.status != Item.Status.DONE
                and item.review_status == Item.Review.NONE
            ):
                fields["review_status"], fields["review_reason"] = item_state.finished_review(
                    counts=votes,
                    low_gold=item.flagged_low_gold,
                    qa_sample_rate=item.project.qa_sample_rate,
                )
            Item.objects.filter(pk=item.pk).update(updated_at=timezone.now(), **fields)
            n += 1
    return n


# --- gold -------------------------------------------------------------------------------------


def _record_gold_answer(*, project, annotator, correct: bool, delta: int = 1) -> None:
    stats, _ = AnnotatorGoldStats.objects.select_for_update().get_or_create(
        project=project, annotator=annotator
    )
    was_low = stats.is_low
    stats.answered = max(0, stats.answered + delta)
    stats.correct = max(0, min(stats.answered, stats.correct + (delta if correct else 0)))
    stats.is_low = (
        stats.answered >= LOW_GOLD_MIN_ANSWERS
        and stats.correct / stats.answered < LOW_GOLD_ACCURACY
    )
    stats.save()
    if stats.is_low and not was_low:
        _flag_low_gold_items(project=project, annotator=annotator)


def _flag_low_gold_items(*, project, annotator) -> None:
    """The annotator's gold accuracy just dropped below the bar: send their finished, unreviewed
    items to QA and flag their open ones so that they go to QA when they finish."""
    mine = Annotation.objects.filter(
        annotator=annotator, item_id=OuterRef("pk"), discarded_at__isnull=True
    )
    base = Item.objects.filter(project=project, is_gold=False).filter(Exists(mine))
    # Items already waiting for QA (sampled, disagreement) get the stronger reason too, as
    # item_state.review_reason ranks it first: the reviewer must know this annotator is unreliable.
    base.filter(
        status=Item.Status.DONE, review_status__in=[Item.Review.NONE, Item.Review.PENDING]
    ).update(review_status=Item.Review.PENDING, review_reason="low_gold")
    base.filter(status=Item.Status.OPEN).update(flagged_low_gold=True)
    audit(action="low_gold", project=project, actor=annotator, data={})


# --- undo and review ------------------------------------------------------------------------


def undo_last_annotation(*, project, annotator):
    """Discard the annotator's last label in the project while its item is unreviewed; the item
    comes back to them with a fresh lease. None when there is nothing to undo."""
    return _in_transaction(_undo_locked, project=project, annotator=annotator)


def _undo_locked(*, project, annotator):
    now = timezone.now()
    ann = (
        Annotation.objects.filter(
            annotator=annotator, item__project=project, discarded_at__isnull=True
        )
        .order_by("-id")
        .first()
    )
    if ann is None:
        return None
    item = _lock_item(ann.item_id)
    if item.review_status in (Item.Review.ACCEPTED, Item.Review.RELABELED):
        return None
    Annotation.objects.filter(pk=ann.pk).update(discarded_at=now, discard_reason="undo")
    ann.discarded_at, ann.discard_reason = now, "undo"
    fields = _item_state(item=item, project=project, votes=_votes_from_db(item.pk))
    fields.update(updated_at=now)
    if item.review_status == Item.Review.PENDING:
        fields.update(review_status=Item.Review.NONE, review_reason="")
    Item.objects.filter(pk=item.pk).update(**fields)
    if item.is_gold:
        _record_gold_answer(
            project=project,
            annotator=annotator,
            correct=ann.label_id == item.gold_label_id,
            delta=-1,
        )
    # Release the lease the page holds now (the undone item replaces it) ...
    Assignment.objects.filter(
        annotator=annotator, project=project, status=Assignment.Status.ACTIVE
    ).update(status=Assignment.Status.EXPIRED, updated_at=now)
    # ... and lease the undone item back (its slot is the one the label just freed).
    Assignment.objects.create(
        item=item,
        project=project,
        annotator=annotator,
        status=Assignment.Status.ACTIVE,
        expires_at=now + timedelta(seconds=project.lease_seconds),
    )
    audit(
        action="undo",
        project=project,
        item_id=item.pk,
        actor=annotator,
        data={"annotation": ann.pk, "label": ann.label_id},
    )
    return ann


def _discard_all(*, item, reason: str, now) -> int:
    n = Annotation.objects.filter(item=item, discarded_at__isnull=True).update(
        discarded_at=now, discard_reason=reason
    )
    Item.objects.filter(pk=item.pk).update(
        annotation_count=0,
        votes={},
        consensus_label=None,
        adjudicated_label=None,
        agreement=None,
        flagged_low_gold=False,
        status=Item.Status.OPEN,
        updated_at=now,
    )
    return n


def review_item(*, item_id, reviewer, action: str, reason: str = "", label=None) -> Review:
    """QA decision on a finished item: accept; reject (labels discarded, item back in the queue);
    relabel (the adjudicated label wins the consensus)."""
    if action not in Review.Action.values:
        raise InvalidReview(f"Unknown action {action!r}; use accept, reject or relabel.")
    reason = (reason or "").strip()
    if len(reason) > limits.max_reason_length():
        raise InvalidReview(f"`reason` must be at most {limits.max_reason_length()} characters.")
    if action == Review.Action.REJECT and not reason:
        raise InvalidReview("A reason is required to reject an item.")
    return _in_transaction(
        _review_locked,
        item_id=item_id,
        reviewer=reviewer,
        action=action,
        reason=reason,
        label=label,
    )


def _review_locked(*, item_id, reviewer, action, reason, label) -> Review:
    now = timezone.now()
    item = _lock_item(item_id)
    project = item.project
    if not policy.can_review_project(reviewer, project):
        raise Forbidden("This project is archived." if project.archived else "You may not review.")
    if item.is_gold:
        raise ReviewConflict("Gold items are not reviewed.")
    if item.status != Item.Status.DONE:
        raise ReviewConflict("Only finished items can be reviewed.")
    label_id = None
    if action == Review.Action.RELABEL:
        choice = schema_choices(project.schema_id).by_slug.get(label or "")
        if choice is None:
            raise InvalidLabel(f"Unknown label {label!r} for relabel.")
        label_id = choice.id
        item.adjudicated_label_id = label_id
        fields = _item_state(item=item, project=project, votes=dict(item.votes or {}))
        fields.pop("status", None)
        Item.objects.filter(pk=item.pk).update(
            adjudicated_label_id=label_id,
            review_status=Item.Review.RELABELED,
            updated_at=now,
            **fields,
        )
    elif action == Review.Action.REJECT:
        _discard_all(item=item, reason="rejected", now=now)
        Item.objects.filter(pk=item.pk).update(review_status=Item.Review.REJECTED, review_reason="")
    else:
        Item.objects.filter(pk=item.pk).update(review_status=Item.Review.ACCEPTED, updated_at=now)
    review = Review.objects.create(
        item=item, reviewer=reviewer, action=action, reason=reason, label_id=label_id
    )
    audit(
        action="review",
        project=project,
        item_id=item.pk,
        actor=reviewer,
        data={"action": action, "reason": reason, "label": label_id},
    )
    return review


def reopen_items(*, item_ids: Iterable[int], actor=None, reason: str = "reopened") -> int:
    """Admin: send finished items back to the queue for fresh labels (old ones are discarded,
    never deleted)."""
    now = timezone.now()
    n = 0
    for item_id in item_ids:
        with transaction.atomic(savepoint=False):
            item = Item.objects.select_for_update().select_related("project").get(pk=item_id)
            if item.is_gold or item.status != Item.Status.DONE:
                continue
            discarded = _discard_all(item=item, reason="reopened", now=now)
            Item.objects.filter(pk=item.pk).update(review_status=Item.Review.NONE, review_reason="")
            audit(
                action="reopen",
                project=item.project_id,
                item_id=item.pk,
                actor=actor,
                data={"discarded": discarded, "reason": reason},
            )
            n += 1
    return n


def record_import_labels(*, project, rows: Iterable[dict], actor=None) -> int:
    """Store labels from an import: rows of {item_id, annotator (user or id), label (slug),
    idempotency_key (optional)}. Existing labels of the same annotator on an item are kept.
    Items' counters/consensus are rebuilt afterwards. Returns the number stored."""
    choices = schema_choices(project.schema_id)
    rows = list(rows)
    bad = sorted({r["label"] for r in rows if r["label"] not in choices.by_slug})
    if bad:
        raise InvalidLabel(f"Unknown label(s): {', '.join(bad)}")
    touched: set[int] = set()
    with transaction.atomic():
        valid_items = set(
            Item.objects.filter(project=project, id__in={r["item_id"] for r in rows}).values_list(
                "id", flat=True
            )
        )
        objs = []
        for r in rows:
            if r["item_id"] not in valid_items:
                raise NotFound(f"Item {r['item_id']} is not in project {project.slug}.")
            annotator_id = getattr(r["annotator"], "pk", r["annotator"])
            objs.append(
                Annotation(
                    item_id=r["item_id"],
                    annotator_id=annotator_id,
                    label_id=choices.by_slug[r["label"]].id,
                    idempotency_key=r.get("idempotency_key") or f"import:{r['item_id']}",
                    note=r.get("note", ""),
                )
            )
            touched.add(r["item_id"])
        stored = len(Annotation.objects.bulk_create(objs, ignore_conflicts=True, batch_size=500))
        audit(action="import_labels", project=project, actor=actor, data={"rows": len(rows)})
    recompute_items(item_ids=sorted(touched))
    return stored
