from jobs.management.base import JobCommand


class Command(JobCommand):
    help = "Train the two-stage creative ranker on impression logs (job kind train_ranker)."
    kind = "train_ranker"

    def add_job_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Name of the ranker to register.")
        parser.add_argument("--days", default="", help="FROM:TO window of log days (inclusive).")
        parser.add_argument("--holdout-days", type=int, default=None)
        parser.add_argument("--encoder", default=None, help="latest (default), none or a name.")
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--lr", type=float, default=None)
        parser.add_argument("--seed", type=int, default=None)

    def job_params(self, options):
        keys = ("name", "days", "holdout_days", "encoder", "epochs", "batch_size", "lr", "seed")
        return {k: options[k] for k in keys if options.get(k) not in (None, "")}
