"""RFNet registry: trained feedback models, their evaluations and the scores they give creatives.

Invariants live in the database: one active model per label schema (partial unique constraint),
one registered model per training job, one score per (creative, model), one evaluation per
(model, dataset version, split)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import DatasetVersion


class FeedbackModel(models.Model):
    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    # e.g. "rfnet-small-demo-v1-3": preset, dataset version, sequence number.
    name = models.SlugField(max_length=150, unique=True)
    schema = models.ForeignKey(
        "annotation.LabelSchema", on_delete=models.PROTECT, related_name="feedback_models"
    )
    # Output index order of the network: class_names[i] is the slug of logit i.
    class_names = models.JSONField(default=list)
    # {"preset": ..., "model": RFNetConfig as a dict, "train": training parameters}
    config = models.JSONField(default=dict, blank=True)
    dataset_version = models.ForeignKey(
        "annotation.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="feedback_models",
    )
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Test metrics (classification_report), agreement with humans, history summary.
    metrics = models.JSONField(default=dict, blank=True)
    # Folder relative to settings.RFSTUDIO_MODELS_DIR. Set only once the folder is complete (it is
    # moved into place with one rename before this is written).
    checkpoint = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["schema"],
                condition=Q(status="active"),
                name="feedbackmodel_one_active_per_schema",
            ),
            # A retried training job finds its model instead of registering a second one.
            models.UniqueConstraint(
                fields=["job"], condition=Q(job__isnull=False), name="feedbackmodel_unique_job"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def checkpoint_path(self):
        if not self.checkpoint:
            return None
        return settings.RFSTUDIO_MODELS_DIR / self.checkpoint


class Evaluation(models.Model):
    class Split(models.TextChoices):
        TEST = "test", "Test split"
        ALL = "all", "All items"

    model = models.ForeignKey(FeedbackModel, on_delete=models.CASCADE, related_name="evaluations")
    dataset_version = models.ForeignKey(
        "annotation.DatasetVersion", on_delete=models.PROTECT, related_name="+"
    )
    split = models.CharField(max_length=5, choices=Split.choices, default=Split.TEST)
    metrics = models.JSONField(default=dict)
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "dataset_version", "split"], name="evaluation_unique_target"
            )
        ]


class CreativeScore(models.Model):
    """RFNet's verdict on one creative. Derived data: recomputable, never a label."""

    creative = models.ForeignKey(
        "generation.Creative", on_delete=models.CASCADE, related_name="rfnet_scores"
    )
    model = models.ForeignKey(FeedbackModel, on_delete=models.CASCADE, related_name="scores")
    probs = models.JSONField()  # {slug: probability}
    p_available = models.FloatField()
    predicted_label = models.SlugField(max_length=100)
    # probs[predicted_label], stored (not read from the JSON) so the disagreements page walks an
    # index in confidence order instead of sorting every disagreement by a JSON value.
    confidence = models.FloatField()
    # Normalised entropy of probs in [0, 1]; the queue serves high values first.
    uncertainty = models.FloatField()
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["creative", "model"], name="creativescore_unique"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0.0, confidence__lte=1.0),
                name="creativescore_confidence_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["model", "creative"], name="creativescore_model_idx"),
            # The disagreements page: the model's scores, most confident first (keyset paging).
            models.Index(
                fields=["model", "-confidence", "creative"], name="creativescore_conf_idx"
            ),
        ]


class TrainingDataset(DatasetVersion):
    """Dataset versions as seen from Feedback: the admin lists them with a "Train RFNet" action
    (a proxy, so annotation's own admin stays unaware of feedback)."""

    class Meta:
        proxy = True
        verbose_name = "training dataset"


from .rfft_models import (  # noqa: E402,F401  RFFT (issue 10)
    ABJudgement,
    ABPair,
    EvaluationImage,
    FineTunableDiffuser,
    GeneratorEvaluation,
)
