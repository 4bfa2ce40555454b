"""Duck-typed progress reporting (the Django side passes jobs.reporting reporters)."""

from __future__ import annotations


class NullReporter:
    def progress(self, step, total=None, phase=None) -> None:
        pass

    def metric(self, name, value, step=None) -> None:
        pass

    def log(self, message) -> None:
        pass


class PrintReporter(NullReporter):
    """Logs and metrics to stdout (bench and command-line use)."""

    def metric(self, name, value, step=None) -> None:
        print(f"[metric] {name}={value:.4f} step={step}", flush=True)

    def log(self, message) -> None:
        print(f"[log] {message}", flush=True)
