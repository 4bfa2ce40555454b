from feedback.jobs import TRAIN
from jobs.management.base import JobCommand


class Command(JobCommand):
    help = (
        "Train an RFNet on a dataset version and register it as a candidate model: "
        "train_rfnet --dataset NAME [--preset small] [--epochs N] [--foreground]"
    )
    kind = TRAIN

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--dataset", required=True, help="Dataset version name.")
        parser.add_argument("--preset", choices=["tiny", "small", "paper", "single_image"])
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--schedule", choices=["cosine", "constant", "step"])
        parser.add_argument(
            "--balance",
            choices=["class_weights", "sampler", "none"],
            help="Class-weighted loss (default), balanced sampling or none.",
        )
        parser.add_argument("--no-augment", action="store_true")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--patience", type=int, help="Early stopping patience (0: off).")
        parser.add_argument("--backbone", help="Local folder of a pretrained vision backbone.")
        parser.add_argument("--no-mixed-precision", action="store_true")

    def job_params(self, options) -> dict:
        params = {"dataset": options["dataset"]}
        for key in (
            "preset",
            "epochs",
            "batch_size",
            "lr",
            "schedule",
            "balance",
            "seed",
            "patience",
            "backbone",
        ):
            if options.get(key) is not None:
                params[key] = options[key]
        if options["no_augment"]:
            params["augment"] = False
        if options["no_mixed_precision"]:
            params["mixed_precision"] = False
        return params
