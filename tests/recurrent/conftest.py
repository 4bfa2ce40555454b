import pytest

from tests.feedback.conftest import register, rf1m_schema, tiny_checkpoint  # noqa: F401


@pytest.fixture(autouse=True)
def _job_work_dir(settings, tmp_path):
    settings.JOBS_WORK_DIR = str(tmp_path / "work")
