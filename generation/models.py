from pathlib import Path

from django.conf import settings
from django.db import models
from django.db.models import Q


class Product(models.Model):
    """A product cut-out: an RGBA image whose alpha channel is the product mask."""

    sku = models.CharField(max_length=128, unique=True)
    title = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=200, blank=True, db_index=True)
    # Product line shared by variants (colourways, sizes) that have their own SKUs; dataset
    # splits group by it so no product is on both sides. The importer defaults it to the SKU.
    family = models.CharField(max_length=128, blank=True, db_index=True)
    image = models.ImageField(upload_to="products/", max_length=500)
    sha256 = models.CharField(max_length=64, db_index=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} {self.title}".strip()

    @property
    def group_key(self) -> str:
        """What splits group by: the family, else the SKU."""
        return self.family or self.sku


class Creative(models.Model):
    """One generated ad image of a product, with how it was generated."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="creatives")
    image = models.ImageField(upload_to="creatives/", max_length=500)
    # WebP thumbnail, made once at import/generation time.
    thumbnail = models.ImageField(upload_to="thumbnails/", max_length=500, blank=True)
    # Unique through Meta.constraints rather than unique=True: on PostgreSQL the latter adds a
    # second (varchar_pattern_ops) index that no query uses and every bulk import maintains.
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    prompt = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    generator = models.CharField(max_length=200, blank=True)
    generator_version = models.CharField(max_length=100, blank=True)
    params = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["sha256"], name="creative_unique_sha256"),
            models.CheckConstraint(
                condition=Q(width__gt=0) & Q(height__gt=0), name="creative_positive_size"
            ),
        ]

    def __str__(self) -> str:
        return f"creative {self.pk} of {self.product_id}"


class DiffusionModel(models.Model):
    """A registered diffuser: a local diffusers folder (inpainting pipeline) + optional
    ControlNet / LoRA / IP-Adapter (weights file + image encoder), with checksum and lineage.

    Lineage cannot point at feedback's or annotation's rows (apps import one way:
    generation is the lowest), so the reward model and the training data are recorded by name
    (`reward_model`, `lineage`); the job that produced the entry is a real foreign key."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        ARCHIVED = "archived", "Archived"

    name = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY)
    path = models.CharField(max_length=1000, help_text="Local diffusers pipeline folder.")
    controlnet_path = models.CharField(max_length=1000, blank=True)
    lora_path = models.CharField(max_length=1000, blank=True)
    image_encoder_path = models.CharField(
        max_length=1000, blank=True, help_text="IP-Adapter image encoder folder (style reference)."
    )
    ip_adapter_path = models.CharField(
        max_length=1000,
        blank=True,
        help_text="IP-Adapter weights (safetensors, diffusers' image_proj.* / ip_adapter.* keys).",
    )
    checksum = models.CharField(max_length=64, help_text="sha256 over every file of the folders.")
    config = models.JSONField(default=dict, blank=True)  # native size, prediction type, sizes
    metrics = models.JSONField(default=dict, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    reward_model = models.CharField(max_length=200, blank=True)  # feedback.FeedbackModel name
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lineage = models.JSONField(default=dict, blank=True)  # dataset version, params, base folder
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # A retried training job finds the entry it registered instead of adding another.
            models.UniqueConstraint(fields=["job"], name="diffusionmodel_one_per_job"),
            # An IP-Adapter is only usable with the image encoder whose embeddings it projects.
            models.CheckConstraint(
                condition=Q(ip_adapter_path="") | ~Q(image_encoder_path=""),
                name="diffusionmodel_ip_adapter_has_encoder",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # Paths are stored as given: absolute, or relative to RFSTUDIO_MODELS_DIR (entries the
    # jobs register), so a models folder can move between hosts.
    @property
    def pipeline_path(self) -> str:
        return resolve_model_path(self.path)

    @property
    def controlnet_full_path(self) -> str | None:
        return resolve_model_path(self.controlnet_path)

    @property
    def lora_full_path(self) -> str | None:
        return resolve_model_path(self.lora_path)

    @property
    def image_encoder_full_path(self) -> str | None:
        return resolve_model_path(self.image_encoder_path)

    @property
    def ip_adapter_full_path(self) -> str | None:
        return resolve_model_path(self.ip_adapter_path)

    @property
    def supports_style_reference(self) -> bool:
        """An IP-Adapter and its image encoder are registered (both validated together)."""
        return bool(self.ip_adapter_path and self.image_encoder_path)


class Generation(models.Model):
    """One generated image: which model, job, product, prompt row and seed made which creative.

    `group` numbers the (product, prompt template) rows of a job; recurrent generation makes
    attempts 1..K in a group with new seeds, each scored (`score` = calibrated P(available) at
    generation time) and `kept` when it passed the threshold (null: not gated)."""

    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(DiffusionModel, on_delete=models.PROTECT, related_name="generations")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="generations")
    creative = models.ForeignKey(Creative, on_delete=models.PROTECT, related_name="generations")
    group = models.PositiveIntegerField(default=0)
    attempt = models.PositiveSmallIntegerField(default=1)
    seed = models.BigIntegerField()
    score = models.FloatField(null=True, blank=True)
    kept = models.BooleanField(null=True, blank=True)
    gpu_seconds = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Re-running an attempt of a job (a resumed worker) cannot store it twice.
            models.UniqueConstraint(
                fields=["job", "group", "attempt"], name="generation_unique_attempt"
            ),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="generation_attempt_gte_1"),
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)),
                name="generation_score_probability",
            ),
        ]
        indexes = [models.Index(fields=["product", "-id"], name="generation_product_recent")]

    def __str__(self) -> str:
        return f"generation {self.pk} (job {self.job_id}, attempt {self.attempt})"


def resolve_model_path(value: str) -> str | None:
    """A registry path as stored → an absolute local path (None when blank)."""
    if not value:
        return None
    path = Path(value)
    return str(path if path.is_absolute() else Path(settings.RFSTUDIO_MODELS_DIR) / path)
