import pytest

from tests.feedback.conftest import rf1m_schema  # noqa: F401  (the RF1M schema fixture)


@pytest.fixture(autouse=True)
def _job_work_dir(settings, tmp_path):
    # Job ids restart with every test database: a shared work dir would "resume" old jobs.
    settings.JOBS_WORK_DIR = str(tmp_path / "work")
