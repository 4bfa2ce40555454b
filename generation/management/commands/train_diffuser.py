"""Train the tiny diffusion base (or fine-tune a registered model) on a dataset version's
creatives and register it (the `train_diffuser` job's CLI twin)."""

from __future__ import annotations

from generation.jobs import TRAIN_DIFFUSER
from jobs.management.base import JobCommand


class Command(JobCommand):
    kind = TRAIN_DIFFUSER
    help = __doc__

    def add_job_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="Dataset version name.")
        parser.add_argument("--label", default="available")
        parser.add_argument("--preset", default="tiny", help="tiny (32 px) | small (64 px)")
        parser.add_argument("--base", default="", help="Fine-tune this registered model.")
        parser.add_argument("--steps", type=int, default=1500)
        parser.add_argument("--batch-size", type=int, default=16)
        parser.add_argument("--lr", type=float, default=1e-3)
        parser.add_argument("--lora-rank", type=int, default=0)
        parser.add_argument("--max-minutes", type=float, default=0)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--name", default="")

    def job_params(self, options) -> dict:
        keys = ("dataset", "label", "preset", "base", "steps", "batch_size", "lr", "lora_rank",
                "max_minutes", "seed", "name")  # fmt: skip
        return {k: options[k] for k in keys}
