"""Annotation data model. Invariants live in the database (unique keys, checks, triggers for the
append-only tables); the write paths are in services.py, the reads in selectors.py."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

# The RF1M taxonomy (ECCV 2024): the default schema of every new project.
RF1M_CLASSES = [
    ("available", "Available", "1", "Usable as an ad: product intact, plausible placement, scale."),
    (
        "unsuitable",
        "Unsuitable",
        "2",
        "The source product is truncated or damaged (cut off, missing parts).",
    ),
    (
        "space_mismatch",
        "Space mismatch",
        "3",
        "Wrong spatial relation: the product floats or does not rest on anything.",
    ),
    ("size_mismatch", "Size mismatch", "4", "The product is the wrong size for the scene."),
    (
        "indistinctiveness",
        "Indistinctiveness",
        "5",
        "The product does not stand out: it blends into a background of the same colours.",
    ),
    (
        "shape_hallucination",
        "Shape hallucination",
        "6",
        "The background extends the product: pedestals, legs, handles that are not part of it.",
    ),
]
AVAILABLE = "available"


class LabelSchema(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class LabelClass(models.Model):
    schema = models.ForeignKey(LabelSchema, on_delete=models.CASCADE, related_name="classes")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    hotkey = models.CharField(max_length=1, blank=True)
    description = models.TextField(blank=True)
    order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["schema_id", "order", "id"]
        constraints = [
            models.UniqueConstraint(fields=["schema", "slug"], name="labelclass_unique_slug"),
            models.UniqueConstraint(
                fields=["schema", "hotkey"],
                condition=~Q(hotkey=""),
                name="labelclass_unique_hotkey",
            ),
        ]

    def __str__(self) -> str:
        return self.slug


class Project(models.Model):
    class Ordering(models.TextChoices):
        FIFO = "fifo", "First in, first out"
        RANDOM = "random", "Random"
        UNCERTAINTY = "uncertainty", "Most uncertain first (RFNet scores)"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    schema = models.ForeignKey(LabelSchema, on_delete=models.PROTECT, related_name="projects")
    overlap = models.PositiveSmallIntegerField(
        default=1, help_text="Annotations (distinct annotators) needed per item."
    )
    lease_seconds = models.PositiveIntegerField(default=600)
    instructions = models.TextField(blank=True)
    qa_sample_rate = models.FloatField(default=0.1)
    gold_rate = models.FloatField(default=0.0)
    ordering = models.CharField(max_length=20, choices=Ordering.choices, default=Ordering.FIFO)
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="annotation_projects",
        help_text="Who may label here. Empty: every member of the annotator group.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived = models.BooleanField(default=False)
    # Bumped by every rewrite of the items' priorities, in the rewrite's transaction (owner:
    # services.set_item_priorities / set_project_ordering). Claims stamp it on their lease; an
    # annotator's queue cursor counts only leases of the current epoch, so a rewrite sends every
    # annotator back to the new top.
    priority_epoch = models.PositiveBigIntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_min_1"),
            models.CheckConstraint(condition=Q(lease_seconds__gte=10), name="project_lease_min"),
            models.CheckConstraint(
                condition=Q(qa_sample_rate__gte=0) & Q(qa_sample_rate__lte=1),
                name="project_qa_rate_0_1",
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_0_1"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # priority_epoch only moves forward, by the services' F() update: a plain save of an
        # instance loaded before a rewrite (the admin form) must not write back its stale value.
        if not self._state.adding and kwargs.get("update_fields") is None:
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name != "priority_epoch"
            ]
        super().save(*args, **kwargs)


class Item(models.Model):
    """A creative in a project's queue. Counters are maintained by services under a row lock."""

    class Status(models.TextChoices):
        OPEN = "open", "Needs annotations"
        DONE = "done", "Finished (overlap reached)"

    class Review(models.TextChoices):
        NONE = "", "Not selected for review"
        PENDING = "pending", "Waiting for QA"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected (back in the queue)"
        RELABELED = "relabeled", "Adjudicated by QA"

    # No single-column index on project (led by item_unique_creative and the queue indexes) nor
    # on the label keys (a label class in use is PROTECTed, never deleted): each index costs
    # every bulk import and every submit.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="items", db_index=False
    )
    creative = models.ForeignKey(
        "generation.Creative", on_delete=models.PROTECT, related_name="items"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # Completed, non-discarded annotations; the item is done when it reaches project.overlap.
    annotation_count = models.PositiveSmallIntegerField(default=0)
    # Queue order key (ascending, ties by id): 0 for FIFO, a random number for `random`,
    # 1 - uncertainty for `uncertainty`.
    priority = models.FloatField(default=0.0)
    is_gold = models.BooleanField(default=False)
    gold_label = models.ForeignKey(
        LabelClass,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    review_status = models.CharField(
        max_length=10, choices=Review.choices, default=Review.NONE, blank=True
    )
    review_reason = models.CharField(max_length=40, blank=True)  # sample|disagreement|low_gold
    # Consensus of the current annotations (majority; the adjudicated label wins). Null: none/tie.
    consensus_label = models.ForeignKey(
        LabelClass,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    adjudicated_label = models.ForeignKey(
        LabelClass,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    agreement = models.FloatField(null=True, blank=True)  # share of votes for the consensus
    # Current (non-discarded) votes per label slug, kept beside annotation_count so that a submit
    # computes the consensus without reading the other annotations.
    votes = models.JSONField(default=dict, blank=True)
    # Lease bookkeeping, maintained by database triggers on Assignment (see migration 0003): the
    # number of `active` assignments and the earliest expiry among them. The claim's WHERE clause
    # reads only these item columns, so PostgreSQL re-checks them on the locked row (EvalPlanQual)
    # and two claimers can never both fill the last slot.
    lease_count = models.IntegerField(default=0, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # One of the item's annotators has low gold accuracy: send it to QA when it finishes.
    flagged_low_gold = models.BooleanField(default=False)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "creative"], name="item_unique_creative"),
            models.CheckConstraint(
                condition=Q(is_gold=False) | Q(gold_label__isnull=False), name="item_gold_has_label"
            ),
        ]
        indexes = [
            # The claim scan: open, non-gold items of a project in queue order.
            models.Index(
                fields=["project", "priority", "id"],
                condition=Q(status="open", is_gold=False),
                name="item_queue_idx",
            ),
            models.Index(fields=["project", "id"], condition=Q(is_gold=True), name="item_gold_idx"),
            models.Index(
                fields=["project", "review_status", "id"],
                condition=Q(review_status="pending"),
                name="item_review_idx",
            ),
            models.Index(fields=["project", "status"], name="item_status_idx"),
        ]

    def __str__(self) -> str:
        return f"item {self.pk}"


class Assignment(models.Model):
    """A lease: `annotator` holds `item` until `expires_at` (renewed by heartbeats)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUBMITTED = "submitted", "Submitted"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Expired"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    # Denormalized from item: the claim finds "my live lease / my last claim in this project"
    # through an index without joining items.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField()
    # The project's priority_epoch read by the claim statement that took this lease (same
    # snapshot as the priorities it ordered by); NULL for leases not taken from the queue
    # (undo, re-let): they are no queue position.
    priority_epoch = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=Q(status="active"),
                name="assignment_one_active_per_annotator",
            )
        ]
        indexes = [
            models.Index(
                fields=["item", "expires_at"],
                condition=Q(status="active"),
                name="assignment_active_idx",
            ),
            models.Index(fields=["annotator", "status", "-id"], name="assignment_annotator_idx"),
            models.Index(
                fields=["annotator", "project"],
                condition=Q(status="active"),
                name="assignment_live_idx",
            ),
            models.Index(fields=["annotator", "project", "-id"], name="assignment_recent_idx"),
            models.Index(fields=["item", "annotator"], name="assignment_item_annot_idx"),
        ]


class Annotation(models.Model):
    class Source(models.TextChoices):
        HUMAN = "human", "Labeling flow"
        IMPORT = "import", "Bulk import"

    # Single-column FK indexes are left out: (item, annotator) and (annotator, created_at) lead
    # with them, and label classes in use are never deleted (PROTECT).
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="annotations", db_index=False
    )
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="annotations",
        db_index=False,
    )
    label = models.ForeignKey(
        LabelClass, on_delete=models.PROTECT, related_name="annotations", db_index=False
    )
    note = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=100)
    # Set when QA rejects the item or the annotator undoes the label; kept, never deleted.
    discarded_at = models.DateTimeField(null=True, blank=True)
    discard_reason = models.CharField(max_length=20, blank=True)  # undo|rejected
    # Where the label came from. Only `human` rows (the lease flow) fire the submit trigger
    # (lease -> submitted, one "submit" audit event each, migration 0005); a bulk import has no
    # lease and logs one "import" audit event with its counts instead.
    source = models.CharField(
        max_length=10, choices=Source.choices, default=Source.HUMAN, db_default=Source.HUMAN
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=Q(discarded_at__isnull=True),
                name="annotation_one_per_item_annotator",
            ),
            models.UniqueConstraint(
                fields=["annotator", "idempotency_key"], name="annotation_unique_idempotency"
            ),
        ]
        indexes = [
            models.Index(fields=["annotator", "-created_at"], name="annotation_recent_idx"),
            models.Index(fields=["item", "annotator"], name="annotation_item_annot_idx"),
        ]


class AnnotatorGoldStats(models.Model):
    """Gold answers per annotator and project; `is_low` marks accuracy < 0.7 over >= 5 answers."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    answered = models.PositiveIntegerField(default=0)
    correct = models.PositiveIntegerField(default=0)
    is_low = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "annotator"], name="goldstats_unique"),
            models.CheckConstraint(condition=Q(correct__lte=F("answered")), name="goldstats_le"),
        ]

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.answered if self.answered else None


class Review(models.Model):
    class Action(models.TextChoices):
        ACCEPT = "accept", "Accept"
        REJECT = "reject", "Reject (back to the queue)"
        RELABEL = "relabel", "Relabel (adjudicate)"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    action = models.CharField(max_length=10, choices=Action.choices)
    reason = models.TextField(blank=True)
    label = models.ForeignKey(
        LabelClass, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(action="relabel") | Q(label__isnull=False),
                name="review_relabel_has_label",
            )
        ]


class AuditEvent(models.Model):
    """Append-only log of every state change (UPDATE/DELETE are refused by database triggers)."""

    project = models.ForeignKey(
        Project,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    item_id_ref = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    action = models.CharField(max_length=40)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]


class ImmutableError(Exception):
    """Dataset versions and their rows are frozen: no update, no delete."""


class ImmutableQuerySet(models.QuerySet):
    # Bulk paths bypass save()/delete(); refuse them here too (UPDATE is also refused by a
    # database trigger, see migrations).
    def update(self, **kwargs):
        raise ImmutableError("dataset versions are immutable")

    def delete(self):
        raise ImmutableError("dataset versions are immutable")


class ImmutableModel(models.Model):
    objects = ImmutableQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableError("dataset versions are immutable")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("dataset versions are immutable")


class DatasetVersion(ImmutableModel):
    """A frozen snapshot of consensus labels that training cites. Immutable once created."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="dataset_versions")
    name = models.SlugField(max_length=100, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # min_agreement, split ratios, seed, schema classes at freeze time.
    params = models.JSONField(default=dict)
    # class counts per split, ties excluded, agreement (alpha, kappa), item count.
    stats = models.JSONField(default=dict)
    item_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


class DatasetItem(ImmutableModel):
    class Split(models.TextChoices):
        TRAIN = "train", "Train"
        VAL = "val", "Validation"
        TEST = "test", "Test"

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="rows")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="+")
    creative = models.ForeignKey("generation.Creative", on_delete=models.PROTECT, related_name="+")
    # The label's slug frozen as text: later schema edits cannot change a version.
    label = models.SlugField(max_length=100)
    split = models.CharField(max_length=5, choices=Split.choices)
    votes = models.PositiveSmallIntegerField()
    agreement = models.FloatField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "item"], name="datasetitem_unique_item"),
        ]
        indexes = [models.Index(fields=["version", "split"], name="datasetitem_split_idx")]
