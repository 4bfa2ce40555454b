from django.core.management.base import CommandError

from jobs.kinds import all_kinds
from jobs.management.base import JobCommand


class Command(JobCommand):
    help = "Launch any job kind: launch_job KIND --param k=v ... [--foreground]"

    def add_job_arguments(self, parser) -> None:
        parser.add_argument("job_kind", help="Job kind (e.g. demo).")
        parser.add_argument(
            "--param", action="append", default=[], metavar="K=V", help="A parameter (repeat)."
        )

    def get_kind_name(self, options) -> str:
        name = options["job_kind"]
        known = {k.name for k in all_kinds()}
        if name not in known:
            raise CommandError(f"Unknown job kind {name!r}; known: {', '.join(sorted(known))}")
        return name

    def job_params(self, options) -> dict:
        params = {}
        for item in options["param"]:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise CommandError(f"--param {item!r}: expected KEY=VALUE")
            params[key.strip()] = value
        return params
