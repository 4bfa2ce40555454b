from jobs.management.base import JobCommand


class Command(JobCommand):
    help = "Train the contrastive creative encoder and embed every creative (train_encoder)."
    kind = "train_encoder"

    def add_job_arguments(self, parser):
        parser.add_argument("--name", default=None)
        parser.add_argument("--steps", type=int, default=None)
        parser.add_argument("--batch-size", type=int, default=None)
        parser.add_argument("--image-size", type=int, default=None)
        parser.add_argument("--lr", type=float, default=None)
        parser.add_argument("--heldout", type=float, default=None)
        parser.add_argument("--seed", type=int, default=None)

    def job_params(self, options):
        keys = ("name", "steps", "batch_size", "image_size", "lr", "heldout", "seed")
        return {k: options[k] for k in keys if options.get(k) not in (None, "")}
