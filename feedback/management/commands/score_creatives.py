from feedback.jobs import SCORE
from jobs.management.base import JobCommand


class Command(JobCommand):
    help = (
        "Store RFNet scores for creatives (batched, resumable; creatives already scored by the "
        "model are skipped): score_creatives [--model NAME|latest|active] [--project SLUG] "
        "[--foreground]"
    )
    kind = SCORE

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--model", default="active", help="Model name, latest or active.")
        parser.add_argument("--project", default="", help="Only this project's creatives.")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--rescore", action="store_true", help="Score scored creatives again.")

    def job_params(self, options) -> dict:
        params = {"model": options["model"], "project": options["project"]}
        if options.get("batch_size") is not None:
            params["batch_size"] = options["batch_size"]
        if options["rescore"]:
            params["rescore"] = True
        return params
