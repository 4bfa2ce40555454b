import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jobs import conf
from jobs.sweeper import sweep_stale_jobs


class Command(BaseCommand):
    help = (
        "Mark RUNNING jobs whose heartbeat is stale as interrupted (re-queueing resumable ones). "
        "Workers do this themselves; run it by hand or from cron when no worker is up."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--stale-seconds", type=float, default=None)
        parser.add_argument("--loop", action="store_true", help="Keep sweeping.")
        parser.add_argument("--interval", type=float, default=None)

    def handle(self, *args, **options):
        interval = options["interval"] or conf.sweep_seconds()
        while True:
            close_old_connections()
            handled = sweep_stale_jobs(stale_seconds=options["stale_seconds"])
            for job_id, status in handled.items():
                self.stdout.write(f"job #{job_id}: interrupted -> {status}")
            if not options["loop"]:
                if not handled:
                    self.stdout.write("No stale jobs.")
                return
            time.sleep(interval)
