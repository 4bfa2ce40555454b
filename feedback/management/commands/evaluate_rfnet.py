import json

from django.core.management.base import CommandError

from feedback.jobs import EVALUATE
from feedback.models import Evaluation
from jobs import runner
from jobs.management.base import JobCommand
from jobs.models import JobStatus
from jobs.tasks import default_worker_id

SUMMARY_KEYS = (
    "accuracy",
    "macro_f1",
    "per_class",
    "available",
    "confusion",
    "ece",
    "n",
    "slices",
)
# Worst groups per slice printed in the text output (all of them are in --json).
WORST_SLICES = 5


class Command(JobCommand):
    help = (
        "Evaluate a model on a dataset version here and now (recorded as a job and an "
        "Evaluation): evaluate_rfnet --model NAME|latest|active --dataset NAME "
        "[--split test|all] [--json]"
    )
    kind = EVALUATE

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--model", required=True, help="Model name, latest or active.")
        parser.add_argument("--dataset", required=True, help="Dataset version name.")
        parser.add_argument("--split", choices=["test", "all"], default="test")
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object: accuracy, macro_f1, per_class, available, confusion, "
            "slices (accuracy per product family and per params.mechanism).",
        )

    def job_params(self, options) -> dict:
        return {"model": options["model"], "dataset": options["dataset"], "split": options["split"]}

    def handle(self, *args, **options):
        # The point of this command is its output: it always runs in the foreground.
        self._json = options["json"]
        options["foreground"] = True
        return super().handle(*args, **options)

    def run_foreground(self, job) -> None:
        if job.status != JobStatus.QUEUED:
            raise CommandError(f"Job #{job.pk} is already {job.status} (same --key).")
        runner.execute(
            job_id=job.pk,
            attempt=job.attempt,
            worker_id=f"fg-{default_worker_id()}",
            dispatch_retries=False,
        )
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Evaluation failed: {job.error or job.status}")
        evaluation = Evaluation.objects.select_related("model", "dataset_version").get(job=job)
        metrics = evaluation.metrics
        if self._json:
            out = {key: metrics.get(key) for key in SUMMARY_KEYS}
            out.update(
                model=evaluation.model.name,
                dataset=evaluation.dataset_version.name,
                split=evaluation.split,
                agreement=metrics.get("agreement"),
            )
            self.stdout.write(json.dumps(out))
            return
        self.stdout.write(
            f"{evaluation.model.name} on {evaluation.dataset_version.name} ({evaluation.split}, "
            f"{metrics.get('n')} items): accuracy {metrics.get('accuracy'):.3f}, "
            f"macro F1 {metrics.get('macro_f1'):.3f}"
        )
        for slug, row in (metrics.get("per_class") or {}).items():
            self.stdout.write(
                f"  {slug:22s} P {row.get('precision', 0):.3f}  R {row.get('recall', 0):.3f}  "
                f"F1 {row.get('f1', 0):.3f}  n={row.get('support')}"
            )
        for name, rows in (metrics.get("slices") or {}).items():
            self.stdout.write(f"  weakest by {name} (of {len(rows)}):")
            for row in rows[:WORST_SLICES]:
                confused = f", mostly as {row['confused_with']}" if row["confused_with"] else ""
                self.stdout.write(
                    f"    {row['key']:30s} accuracy {row['accuracy']:.3f}  n={row['n']}{confused}"
                )
