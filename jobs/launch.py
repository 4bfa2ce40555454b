"""`accelerate launch -m jobs.launch <job_id> <attempt>`: one process per GPU; see runner."""

import os
import sys


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from jobs.runner import run_rank

    return run_rank(int(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    sys.exit(main())
