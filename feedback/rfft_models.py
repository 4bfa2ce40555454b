"""Generator evaluations and the blind A/B judgements of QA (imported by feedback/models.py).

Invariants in the database: one evaluation per job; one pair per (evaluation, product, seed,
prompt); one judgement per (pair, reviewer); a judgement's choice and labels are from fixed
choices. Which side shows which model (`a_on_left`) is drawn once when the pair is created and
is only ever read by the service that records a judgement, never by a page or the API.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from generation.models import DiffusionModel


class GeneratorEvaluation(models.Model):
    """One `evaluate_generator` run: a model (and its baseline) on held-out products × seeds."""

    name = models.SlugField(max_length=200, unique=True)
    job = models.OneToOneField(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Registry names (generation's DiffusionModel.name) at the time of the run.
    model_name = models.CharField(max_length=200)
    baseline_name = models.CharField(max_length=200, blank=True)
    reward_name = models.CharField(max_length=200, blank=True)
    judge_name = models.CharField(max_length=200, blank=True)
    products = models.JSONField(default=list)  # SKUs, in order
    seeds = models.JSONField(default=list)
    prompts = models.JSONField(default=list)
    # {"model": summary, "baseline": summary, ...}: see feedback.rfft_eval.summarise/compare.
    results = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class EvaluationImage(models.Model):
    """One generated creative of an evaluation, with the two RFNet verdicts."""

    class Side(models.TextChoices):
        MODEL = "model", "Model"
        BASELINE = "baseline", "Baseline"

    evaluation = models.ForeignKey(
        GeneratorEvaluation, on_delete=models.CASCADE, related_name="images"
    )
    side = models.CharField(max_length=10, choices=Side.choices)
    creative = models.ForeignKey("generation.Creative", on_delete=models.PROTECT, related_name="+")
    product = models.ForeignKey("generation.Product", on_delete=models.PROTECT, related_name="+")
    seed = models.BigIntegerField()
    prompt_index = models.PositiveIntegerField(default=0)
    p_reward = models.FloatField(null=True, blank=True)
    p_judge = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "side", "product", "seed", "prompt_index"],
                name="evaluationimage_unique_cell",
            )
        ]


class ABPair(models.Model):
    """Two creatives of one product, seed and prompt: one from the model, one from the baseline."""

    evaluation = models.ForeignKey(
        GeneratorEvaluation, on_delete=models.CASCADE, related_name="pairs"
    )
    model_image = models.ForeignKey(EvaluationImage, on_delete=models.CASCADE, related_name="+")
    baseline_image = models.ForeignKey(EvaluationImage, on_delete=models.CASCADE, related_name="+")
    # Drawn at creation (secrets.randbits); never rendered. True: the model's creative is left.
    a_on_left = models.BooleanField()
    # Random order of presentation (also drawn at creation), so pairs do not come model-sorted.
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["evaluation", "model_image"], name="abpair_unique_model_image"
            ),
        ]


class ABJudgement(models.Model):
    """A QA reviewer's blind verdict on one pair, stored per model (not per side)."""

    class Preference(models.TextChoices):
        MODEL = "model", "Model better"
        BASELINE = "baseline", "Baseline better"
        SAME = "same", "Same"

    pair = models.ForeignKey(ABPair, on_delete=models.CASCADE, related_name="judgements")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    preference = models.CharField(max_length=10, choices=Preference.choices)
    # RF1M class slugs given to each creative (label schema of the evaluation's judge).
    model_label = models.SlugField(max_length=64)
    baseline_label = models.SlugField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["pair", "reviewer"], name="abjudgement_one_per_reviewer"
            ),
            models.CheckConstraint(
                condition=Q(preference__in=["model", "baseline", "same"]),
                name="abjudgement_preference_valid",
            ),
        ]


class FineTunableDiffuser(DiffusionModel):
    """generation's diffusion models seen from feedback, where the RFNet-driven actions live
    (fine-tune against an RFNet, evaluate): a proxy, no table."""

    class Meta:
        proxy = True
        verbose_name = "diffusion model (RFFT)"
        verbose_name_plural = "diffusion models (RFFT)"
