from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_ranking_permissions(**kwargs) -> None:
    from core.roles import ML_ENGINEER, QA, grant

    grant(
        ML_ENGINEER,
        [
            "ranking.view_segment",
            "ranking.add_segment",
            "ranking.change_segment",
            "ranking.view_impressionlog",
            "ranking.view_rankingmodel",
            "ranking.view_creativefeatures",
        ],
    )
    grant(QA, ["ranking.view_segment", "ranking.view_rankingmodel"])


class RankingConfig(AppConfig):
    name = "ranking"
    verbose_name = "Ranking"

    def ready(self) -> None:
        from .jobs import register_kinds

        register_kinds()
        post_migrate.connect(
            grant_ranking_permissions, sender=self, dispatch_uid="rfstudio-ranking-perms"
        )
        # seed_demo announces itself; ranking adds impression logs (annotation can't import us).
        try:
            from annotation.signals import demo_seeded
        except ImportError:  # pragma: no cover
            return
        from .demo import on_demo_seeded

        demo_seeded.connect(on_demo_seeded, dispatch_uid="rfstudio-ranking-demo")
