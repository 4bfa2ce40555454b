"""Ranking: user segments, aggregated impression logs, creative features and embeddings, the
encoder/ranker registry and stored preview lists.

Invariants live in the database: one log row per (day, segment, creative) with
0 <= clicks <= impressions; one feature row per (creative, extractor, version); one embedding per
(creative, encoder); one registered model per training job; one preview entry per
(segment, model, creative) and one rank per (segment, model, product)."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Segment(models.Model):
    """A user segment (audience) the ranker orders creatives for."""

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # Free-form description used as ranker input: numbers as they are, strings one-hot (hashed).
    features = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name or self.slug


class ImpressionLog(models.Model):
    """Impressions and clicks of one creative shown to one segment on one day (aggregated)."""

    day = models.DateField()
    # Not indexed alone: the unique (segment, creative, day) index leads with it.
    segment = models.ForeignKey(
        Segment, on_delete=models.PROTECT, related_name="logs", db_index=False
    )
    creative = models.ForeignKey(
        "generation.Creative", on_delete=models.PROTECT, related_name="impression_logs"
    )
    impressions = models.BigIntegerField()
    clicks = models.BigIntegerField()

    class Meta:
        ordering = ["day", "id"]
        constraints = [
            # Idempotency key of the import (ON CONFLICT), also the look-up index per segment.
            models.UniqueConstraint(
                fields=["segment", "creative", "day"], name="impressionlog_unique_key"
            ),
            models.CheckConstraint(
                condition=Q(impressions__gte=0)
                & Q(clicks__gte=0)
                & Q(clicks__lte=F("impressions")),
                name="impressionlog_counts_valid",
            ),
        ]


class CreativeFeatures(models.Model):
    """One extractor's output for one creative (derived data: recomputed per extractor version)."""

    creative = models.ForeignKey(
        "generation.Creative", on_delete=models.CASCADE, related_name="ranking_features"
    )
    extractor = models.CharField(max_length=50)
    version = models.CharField(max_length=50)
    values = models.JSONField(default=dict)
    # Why the extractor produced nothing usable (missing file, invalid LLM answer, ...).
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["creative", "extractor", "version"], name="creativefeatures_unique"
            )
        ]


class RankingModel(models.Model):
    """A trained encoder or ranker (folder of safetensors weights + JSON config)."""

    class Kind(models.TextChoices):
        ENCODER = "encoder", "Creative encoder"
        RANKER = "ranker", "Creative ranker"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.SlugField(max_length=150, unique=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # Folder relative to settings.RFSTUDIO_MODELS_DIR, set once the folder is complete.
    checkpoint = models.CharField(max_length=500, blank=True)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job"], condition=Q(job__isnull=False), name="rankingmodel_unique_job"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def checkpoint_path(self):
        return settings.RFSTUDIO_MODELS_DIR / self.checkpoint if self.checkpoint else None


class CreativeEmbedding(models.Model):
    """An encoder's L2-normalised embedding of a creative (float32 bytes)."""

    creative = models.ForeignKey(
        "generation.Creative", on_delete=models.CASCADE, related_name="embeddings"
    )
    encoder = models.ForeignKey(RankingModel, on_delete=models.CASCADE, related_name="embeddings")
    vector = models.BinaryField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["encoder", "creative"], name="creativeembedding_unique")
        ]


class PreviewEntry(models.Model):
    """One creative's place in the ranked list a ranker serves a segment for a product."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="previews")
    model = models.ForeignKey(RankingModel, on_delete=models.CASCADE, related_name="previews")
    product = models.ForeignKey("generation.Product", on_delete=models.CASCADE, related_name="+")
    creative = models.ForeignKey("generation.Creative", on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()  # 1 = served first
    score = models.FloatField()
    p_ctr = models.FloatField()  # stage-one <segment, product> CTR
    # [[feature, contribution], ...] largest |contribution| first (gradient × input).
    contributions = models.JSONField(default=list)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["segment", "model", "product", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["segment", "model", "creative"], name="previewentry_unique_creative"
            ),
            models.UniqueConstraint(
                fields=["segment", "model", "product", "rank"], name="previewentry_unique_rank"
            ),
        ]
