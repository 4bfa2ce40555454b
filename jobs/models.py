"""The Job record and what hangs off it. Who writes which field is in docs/jobs.md ("Concurrency"):
the web side writes status only for queued jobs and cancel_requested_at; the worker that owns a
running attempt writes progress, logs, heartbeat and the final status."""

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    INTERRUPTED = "interrupted", "Interrupted"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_STATUSES = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.INTERRUPTED,
)


class Job(models.Model):
    kind = models.CharField(max_length=100, db_index=True)
    queue = models.CharField(max_length=32, default="default")
    params = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Unique outright: a second enqueue with the same key returns the first job, whatever its
    # state (a double-clicked confirmation form carries one key).
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)

    # Progress (written by the owning worker through the reporter, throttled).
    step = models.BigIntegerField(default=0)
    total = models.BigIntegerField(null=True, blank=True)
    phase = models.CharField(max_length=200, blank=True)
    eta_at = models.DateTimeField(null=True, blank=True)
    log_lines = models.JSONField(default=list, blank=True)  # the last N lines only
    result = models.JSONField(null=True, blank=True)

    # Execution.
    attempt = models.PositiveIntegerField(default=1)
    max_attempts = models.PositiveIntegerField(default=1)
    worker_id = models.CharField(max_length=64, blank=True, db_index=True)
    device = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    task_result_id = models.CharField(max_length=64, blank=True)  # the django-tasks result id
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    # Lineage: free JSON plus one optional generic reference (e.g. a DatasetVersion).
    inputs = models.JSONField(default=dict, blank=True)
    input_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    input_id = models.CharField(max_length=64, blank=True)
    input_object = GenericForeignKey("input_type", "input_id")

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="jobs_status_heartbeat")]
        constraints = [
            models.CheckConstraint(
                condition=Q(attempt__gte=1) & Q(max_attempts__gte=1), name="jobs_attempts_positive"
            ),
            models.CheckConstraint(
                condition=Q(status__in=JobStatus.values), name="jobs_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} ({self.status})"

    def get_absolute_url(self) -> str:
        return f"/jobs/{self.pk}/"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.step / self.total))


class JobMetric(models.Model):
    """One point of a metric time series (loss per step, eval per epoch), bulk-inserted at
    reporter flushes."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="metrics")
    name = models.CharField(max_length=100)
    step = models.BigIntegerField()
    value = models.FloatField()
    attempt = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["job", "name", "step", "id"]
        indexes = [models.Index(fields=["job", "name", "step"], name="jobs_metric_series")]

    def __str__(self) -> str:
        return f"{self.name}@{self.step}={self.value:g}"


class JobArtifact(models.Model):
    """A complete file in default storage; the row is written only after the file is."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=200)
    file = models.FileField(max_length=500)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "name"]
        constraints = [
            models.UniqueConstraint(fields=["job", "name"], name="jobs_artifact_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class Worker(models.Model):
    """Workers seen recently: upserted by the runner at job start, heartbeat and idle sweeps."""

    worker_id = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    device = models.CharField(max_length=200, blank=True)
    backend = models.CharField(max_length=32, blank=True)
    current_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen"]

    def __str__(self) -> str:
        return self.worker_id
