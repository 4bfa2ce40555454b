from jobs.management.base import JobCommand


class Command(JobCommand):
    help = "Launch the demo training job (tiny torch loop, resumable)."
    kind = "demo"

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("--steps", type=int, default=200)
        parser.add_argument("--steps-per-epoch", type=int, default=50)
        parser.add_argument("--step-sleep", type=float, default=0.0)
        parser.add_argument("--seed", type=int, default=0)

    def job_params(self, options) -> dict:
        return {
            "steps": options["steps"],
            "steps_per_epoch": options["steps_per_epoch"],
            "step_sleep": options["step_sleep"],
            "seed": options["seed"],
        }
