from feedback.rfft import RFFT
from jobs.management.base import JobCommand


class Command(JobCommand):
    help = (
        "Fine-tune a diffusion model's ControlNet against an RFNet (RFFT or ReFL) and register the "
        "result: finetune_diffuser --base NAME --reward active|NAME --method rfft|refl [--beta B] "
        "[--steps N] [--lora-rank R] [--products SKU,...] [--foreground]"
    )
    kind = RFFT

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--base", required=True, help="Diffusion model name or 'latest'.")
        parser.add_argument("--reward", default="active", help="RFNet name, 'active' or 'latest'.")
        parser.add_argument("--method", choices=["rfft", "refl"], default="rfft")
        parser.add_argument("--beta", type=float, help="Weight of the consistent-condition term.")
        parser.add_argument("--steps", type=int, help="Optimizer steps.")
        parser.add_argument("--lora-rank", type=int, help="0: whole ControlNet; r: LoRA rank r.")
        parser.add_argument("--products", help="Training SKUs, comma-separated (default: all).")
        parser.add_argument("--batch-size", type=int)
        parser.add_argument("--gradient-accumulation-steps", type=int)
        parser.add_argument("--lr", type=float)
        parser.add_argument("--num-inference-steps", type=int, help="N: DDIM steps.")
        parser.add_argument("--last-k", type=int, help="K: gradient step among the last K.")
        parser.add_argument("--guidance-scale", type=float)
        parser.add_argument("--no-gradient-checkpointing", action="store_true")
        parser.add_argument("--checkpoint-every", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--name", help="Name of the resulting diffusion model.")

    def job_params(self, options) -> dict:
        params = {"base": options["base"], "reward": options["reward"], "method": options["method"]}
        for key in (
            "beta", "steps", "lora_rank", "products", "batch_size", "gradient_accumulation_steps",
            "lr", "num_inference_steps", "last_k", "guidance_scale", "checkpoint_every", "seed",
            "name",
        ):  # fmt: skip
            if options.get(key) is not None:
                params[key] = options[key]
        if options["no_gradient_checkpointing"]:
            params["gradient_checkpointing"] = False
        return params
