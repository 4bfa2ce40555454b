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
