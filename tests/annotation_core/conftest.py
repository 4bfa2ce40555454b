import pytest

from tests.factories import make_project, make_user


@pytest.fixture
def project(db):
    return make_project(overlap=1, n_items=5)


@pytest.fixture
def annotator(db):
    return make_user("annotator")


def work_queries(ctx):
    """Statements that do work: transaction control (BEGIN / COMMIT, logged by Django since 4.2)
    is not a query. A SAVEPOINT would be, and fails the budget tests."""
    return [
        q["sql"]
        for q in ctx.captured_queries
        if q["sql"] not in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT")
    ]
