"""Keep the per-process schema cache honest when label classes change in this process."""

from django.db.models.signals import post_delete, post_save
from django.dispatch import Signal, receiver

from .models import LabelClass, LabelSchema


@receiver(post_save, sender=LabelClass)
@receiver(post_delete, sender=LabelClass)
@receiver(post_save, sender=LabelSchema)
def _clear_schema_cache(sender, instance, **kwargs):
    from .schema_cache import clear_schema_cache

    clear_schema_cache()


# Sent by seed_demo when the demo project is ready (kwargs: project, seed, log). Apps above
# annotation add their own demo data from a receiver (ranking: impression logs) without annotation
# importing them.
demo_seeded = Signal()
