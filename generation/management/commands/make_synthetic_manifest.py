import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from generation import synthetic


class Command(BaseCommand):
    help = (
        "Write procedural ad creatives with RF1M defects (creatives/*.png, products/<sku>.png) "
        "and a manifest.jsonl in the import format into OUT_DIR. Deterministic given --seed."
    )
    # Writes files only: no database, so the project's system checks are not needed.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("out_dir", help="folder to write into (created if missing)")
        parser.add_argument("--n", type=int, default=3000, help="number of creatives")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--size", type=int, default=256, help="image side in pixels")
        parser.add_argument("--workers", type=int, default=1, help="worker processes")
        parser.add_argument("--no-labels", action="store_true", help="omit the `label` field")
        parser.add_argument(
            "--procedural-only",
            action="store_true",
            help="ignore the real cut-outs in SHARED_DIR/products; draw every product",
        )

    def handle(self, *args, out_dir, n, seed, size, workers, no_labels, procedural_only, **opts):
        if n < 1:
            raise CommandError("--n must be at least 1")
        if not 32 <= size <= 2048:
            raise CommandError("--size must be between 32 and 2048")
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a folder")
        started = time.perf_counter()
        manifest = synthetic.write_manifest(
            out,
            n,
            seed,
            size=size,
            with_labels=not no_labels,
            workers=workers,
            shared_dir=settings.SHARED_DIR,
            include_shared=not procedural_only,
        )
        took = time.perf_counter() - started
        self.stdout.write(f"wrote {n} creatives to {manifest} in {took:.1f}s ({n / took:.0f}/s)")
