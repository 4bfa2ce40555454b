"""Settings come from the environment; production settings pass `check --deploy`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_deploy_check(tmp_path):
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "DJANGO_SECRET_KEY": "x" * 30 + "-production-secret-key-for-the-check-0123456789",
            "DJANGO_ALLOWED_HOSTS": "rfstudio.example.com",
            "RFSTUDIO_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = _manage("check", env={"RFSTUDIO_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_sqlite_default_uses_wal_and_immediate_transactions(settings):
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.sqlite3":
        return
    assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0].lower() == "wal"


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(None, "True 5"), ("0", "True 0"), ("off", "None None")],
)
def test_postgres_binds_server_side_and_prepares_unless_switched_off(tmp_path, threshold, expected):
    """Only reads settings (no connection): the OPTIONS Django hands to psycopg."""
    env = {
        "DJANGO_DEBUG": "1",
        "RFSTUDIO_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    if threshold is not None:
        env["RFSTUDIO_PG_PREPARE_THRESHOLD"] = threshold
    code = (
        "from django.conf import settings; o = settings.DATABASES['default']['OPTIONS']; "
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))"
    )
    result = _manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected  # after the auto-import notice


def test_a_bad_prepare_threshold_is_refused_with_its_name(tmp_path):
    env = {
        "DJANGO_DEBUG": "1",
        "RFSTUDIO_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        "RFSTUDIO_PG_PREPARE_THRESHOLD": "five",
    }
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "RFSTUDIO_PG_PREPARE_THRESHOLD" in result.stderr


@pytest.mark.django_db
def test_hot_path_statements_are_prepared_on_postgres(settings):
    """The labeling queries, repeated, run as server-side prepared statements."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL prepared statements")
    from annotation.authentication import TOKEN_WITH_ROLES
    from tests.factories import make_token, make_user

    key = make_token(make_user())
    for _ in range(settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] + 1):
        assert TOKEN_WITH_ROLES.first(key=key) is not None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%authtoken_token%"],
        )
        assert cursor.fetchone()[0] >= 1
