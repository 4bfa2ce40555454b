"""CreativeScore.confidence: probs[predicted_label] as a column, backfilled from the JSON, with the
index the disagreements page walks (model, -confidence, creative) and a 0..1 check.

The column is added nullable, filled in id-ordered batches (bounded memory on a 1M-score table,
on SQLite and PostgreSQL alike), then made NOT NULL, indexed and checked."""

from django.db import migrations, models

BATCH = 5_000


def confidence_of(probs, predicted_label) -> float:
    """Frozen copy of the rule in feedback.analysis.summarize (migrations do not import app code
    that may change later): the predicted class's probability, 0 when absent, clamped to 0..1."""
    try:
        value = float((probs or {}).get(predicted_label, 0.0))
    except (TypeError, ValueError):
        value = 0.0
    return min(max(value, 0.0), 1.0) if value == value else 0.0  # NaN → 0


def backfill_confidence(apps, schema_editor):
    """Every row, recomputed (idempotent: re-running it changes nothing)."""
    CreativeScore = apps.get_model("feedback", "CreativeScore")
    scores = CreativeScore.objects.using(schema_editor.connection.alias)
    last = 0
    while True:
        batch = list(
            scores.filter(id__gt=last).order_by("id").only("id", "probs", "predicted_label")[
                :BATCH
            ]
        )
        if not batch:
            return
        for score in batch:
            score.confidence = confidence_of(score.probs, score.predicted_label)
        scores.bulk_update(batch, ["confidence"], batch_size=1_000)
        last = batch[-1].id


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0002_rfft"),
    ]

    operations = [
        migrations.AddField(
            model_name="creativescore",
            name="confidence",
            field=models.FloatField(null=True),
        ),
        migrations.RunPython(backfill_confidence, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="creativescore",
            name="confidence",
            field=models.FloatField(),
        ),
        migrations.AddIndex(
            model_name="creativescore",
            index=models.Index(
                fields=["model", "-confidence", "creative"], name="creativescore_conf_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="creativescore",
            constraint=models.CheckConstraint(
                condition=models.Q(("confidence__gte", 0.0), ("confidence__lte", 1.0)),
                name="creativescore_confidence_0_1",
            ),
        ),
    ]
