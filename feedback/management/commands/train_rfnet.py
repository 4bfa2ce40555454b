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
        parser.add_argument(
            "--epochs", type=int, help="Default: enough for 2,000 optimizer steps (10 to 100)."
        )
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
        parser.add_argument(
            "--patience",
            type=int,
            help="Early stopping patience (0: off; default: a third of the epochs, at least 5).",
        )
        parser.add_argument("--backbone", help="Local folder of a pretrained vision backbone.")
        parser.add_argument("--no-mixed-precision", action="store_true")
        parser.add_argument(
            "--text-encoder", help="Local folder of a transformers text encoder (e.g. RoBERTa)."
        )
        parser.add_argument(
            "--depth-model", help="Local folder of a depth model (adds depth maps)."
        )
        parser.add_argument("--freeze-text-encoder", action="store_true")
        parser.add_argument("--freeze-backbones", action="store_true")
        parser.add_argument(
            "--lr-pretrained", type=float, help="Learning rate of pretrained parts (default 1e-4)."
        )

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
            "text_encoder",
            "depth_model",
            "lr_pretrained",
        ):
            if options.get(key) is not None:
                params[key] = options[key]
        if options["no_augment"]:
            params["augment"] = False
        if options["no_mixed_precision"]:
            params["mixed_precision"] = False
        if options["freeze_text_encoder"]:
            params["freeze_text_encoder"] = True
        if options["freeze_backbones"]:
            params["freeze_backbones"] = True
        return params
