from django.apps import AppConfig
from django.db.models.signals import post_migrate


def grant_feedback_permissions(**kwargs) -> None:
    from core.roles import ML_ENGINEER, QA, grant

    grant(
        ML_ENGINEER,
        [
            "feedback.view_feedbackmodel",
            "feedback.change_feedbackmodel",
            "feedback.view_evaluation",
            "feedback.view_creativescore",
            "feedback.view_trainingdataset",
            "feedback.view_finetunablediffuser",  # RFFT (issue 10)
            "feedback.view_generatorevaluation",
        ],
    )
    # QA may look at models and scores (read-only); annotators get nothing: they label blind.
    grant(
        QA,
        [
            "feedback.view_feedbackmodel",
            "feedback.view_creativescore",
            "feedback.view_generatorevaluation",
        ],
    )


class FeedbackConfig(AppConfig):
    name = "feedback"
    verbose_name = "Feedback (RFNet)"

    def ready(self) -> None:
        from .jobs import register_kinds
        from .recurrent import register_kinds as register_recurrent_kinds
        from .rfft import register_kinds as register_rfft_kinds

        register_kinds()
        register_rfft_kinds()
        register_recurrent_kinds()
        post_migrate.connect(
            grant_feedback_permissions, sender=self, dispatch_uid="rfstudio-feedback-perms"
        )
