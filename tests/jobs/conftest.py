"""Fixtures for the jobs tests: real worker subprocesses (db_worker, rqworker) against the test
database, on SQLite (a file: settings TEST NAME) and PostgreSQL (test_<name>)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from jobs.runner import stop_process_group
from tests.factories import make_user

ROOT = Path(__file__).resolve().parents[2]
# Fast timings for tests (the web process reads settings, the workers the environment).
# STALE is 10 heartbeats: a loaded CI machine must not get live jobs swept.
TIMINGS = {"HEARTBEAT_SECONDS": 0.5, "STALE_SECONDS": 5, "SWEEP_SECONDS": 1, "FLUSH_SECONDS": 0.3}


@pytest.fixture(autouse=True)
def _jobs_settings(settings, tmp_path):
    settings.ROOT_URLCONF = "tests.jobs.urls"
    settings.JOBS_WORK_DIR = str(tmp_path / "work")
    for key, value in TIMINGS.items():
        setattr(settings, f"JOBS_{key}", value)


def database_url() -> str:
    """The URL of the database this test runs against (already the test database)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def worker_env(tmp_path: Path, **extra) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_DEBUG": "1",
        "DJANGO_MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "RFSTUDIO_JOBS_WORK_DIR": str(django_settings.JOBS_WORK_DIR),
        "RFSTUDIO_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
        **{f"RFSTUDIO_JOBS_{k}": str(v) for k, v in TIMINGS.items()},
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(extra)
    return env


class Workers:
    """Starts worker processes (each in its own process group) and always stops them."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str, name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env or worker_env(self.tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = self.tmp_path / f"{name}.log"
        self.procs.append(proc)
        return proc

    def db_worker(self, worker_id: str, queues: str = "default,gpu") -> subprocess.Popen:
        return self.start(
            "db_worker", "--queue-name", queues, "--worker-id", worker_id, "--no-reload",
            "--no-startup-delay", "--interval", "0.2", name=worker_id,
        )  # fmt: skip

    def kill(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=20)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_process_group(proc, timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log_path.name}\n{p.log_path.read_text()[-4000:]}" for p in self.procs
        )


@pytest.fixture
def workers(tmp_path, transactional_db):
    w = Workers(tmp_path)
    yield w
    w.stop_all()


def wait_for(
    predicate, *, timeout: float, interval: float = 0.1, what: str = "condition", on_fail=None
):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    extra = f"\n{on_fail()}" if on_fail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")


@pytest.fixture
def ml_user(db):
    return make_user("ml_engineer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """REDIS_URL when CI provides one; else a private redis-server on a free loopback port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
