from django.core.management.base import BaseCommand, CommandError

from annotation.demo import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = (
        "Create the demo: users admin, annotator1-3, qa1, ml1 (password demo-pass-123), the "
        "project rf1m-demo with synthetic creatives, labels, gold items, QA reviews and a dataset "
        "version. Idempotent: a second run adds nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--creatives", type=int, default=600, help="queued creatives")
        parser.add_argument(
            "--labeled", type=int, default=None, help="of those, labeled (default 75%%)"
        )
        parser.add_argument("--gold", type=int, default=12, help="extra gold items")
        parser.add_argument("--size", type=int, default=256, help="image side in pixels")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--flush-demo",
            action="store_true",
            help="archive the current demo project (nothing is deleted) and seed a fresh one",
        )

    def handle(self, *args, creatives, labeled, gold, size, seed, flush_demo, **options):
        if creatives < 1:
            raise CommandError("--creatives must be at least 1")
        if labeled is not None and not 0 <= labeled <= creatives:
            raise CommandError("--labeled must be between 0 and --creatives")
        if gold < 0:
            raise CommandError("--gold must be >= 0")
        if not 32 <= size <= 1024:
            raise CommandError("--size must be between 32 and 1024")
        result = seed_demo(
            creatives=creatives,
            labeled=labeled,
            gold=gold,
            size=size,
            seed=seed,
            flush=flush_demo,
            log=lambda msg: self.stdout.write(msg),
        )
        self.stdout.write(result.summary())
        if result.users_created:
            self.stdout.write(f"demo users' password: {DEMO_PASSWORD}")
