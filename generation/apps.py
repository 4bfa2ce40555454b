from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_generation_permissions(**kwargs) -> None:
    from core.roles import ML_ENGINEER, QA, grant

    # ML engineers launch generation from the product admin and manage the model registry.
    grant(
        ML_ENGINEER,
        [
            "generation.view_product",
            "generation.change_product",
            "generation.view_creative",
            "generation.view_diffusionmodel",
            "generation.change_diffusionmodel",
            "generation.view_generation",
        ],
    )
    grant(QA, ["generation.view_diffusionmodel", "generation.view_generation"])


class GenerationConfig(AppConfig):
    name = "generation"

    def ready(self) -> None:
        from .jobs import register_kinds

        register_kinds()
        post_migrate.connect(
            grant_generation_permissions, sender=self, dispatch_uid="rfstudio-generation-perms"
        )
