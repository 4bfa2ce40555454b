"""The API keeps its published contract: schemathesis generates requests from /api/schema/ for
every operation (valid and invalid input, bounded and seeded), sends them through the real WSGI
stack with an annotator's and an ML engineer's token, and checks that no answer is a server error
and every answer (status code, content type, body) is one the schema documents."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from annotation import services
from annotation.datasets import create_dataset_version
from jobs.services import enqueue_job
from tests.factories import make_project, make_token, make_user

pytestmark = pytest.mark.django_db(transaction=False)

EXAMPLES = 8  # per operation, mode and token: ~2 × 2 × 30 × 8 requests, about a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def world():
    """Real objects for half of the generated requests to hit (random ids and names mostly
    404): a project with open, leased, finished (pending QA) items, a dataset version, a job."""
    annotator, ml = make_user("annotator"), make_user("ml_engineer")
    project = make_project(slug="contract", overlap=1, n_items=6, qa_sample_rate=1.0)
    for key in ("a", "b"):
        lease = services.claim_next_item(project=project, annotator=annotator)
        services.submit_annotation(
            item_id=lease.item_id, annotator=annotator, label="available", idempotency_key=key
        )
    live = services.claim_next_item(project=project, annotator=annotator)
    version = create_dataset_version(project=project, name="contract-v1", created_by=ml)
    job = enqueue_job(kind="demo", params={"steps": 1}, requested_by=ml)
    return {
        "tokens": {"annotator": make_token(annotator), "ml_engineer": make_token(ml)},
        "values": {
            "slug": "contract",
            "item_id": live.item_id,
            "name": version.name,
            "id": project.items.first().creative_id,
        },
        "job": job.pk,
    }


def _real(values: dict, path: str):
    """Put real path values into a generated case (ids of jobs under /jobs/)."""

    def fill(case):
        for name in list(case.path_parameters or {}):
            if name in values:
                case.path_parameters[name] = values[name]
        return case

    return fill


@contextmanager
def connection_kept_open():
    """Like Django's test client: keep the test's connection open across WSGI requests (the
    request signals would close it under the test transaction). Django's own test client
    reconnects these receivers after each of its requests, so enter this after using it."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_api_matches_its_schema(world, settings):
    settings.RFSTUDIO_THROTTLE_USER = ""  # thousands of requests in a minute
    app = get_wsgi_application()
    served = Client().get("/api/schema/", {"format": "json"})
    assert served.status_code == 200
    schema = schemathesis.openapi.from_dict(json.loads(served.content))
    failures: list[str] = []
    with connection_kept_open():
        _run(schema, app, world, failures)
    assert not failures, "\n\n".join(failures)


def _run(schema, app, world, failures):
    tokens = world["tokens"]
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        values = dict(world["values"])
        if operation.path.startswith("/api/jobs/"):
            values["id"] = world["job"]
        raw = operation.definition.raw
        negatable = bool(raw.get("requestBody")) or any(
            p.get("schema", {}).get("type") != "string" for p in raw.get("parameters", [])
        )
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and not negatable:
                continue  # nothing in it can be invalid (any string is a valid slug/name)
            generated = operation.as_strategy(generation_mode=mode)
            # Half the cases on real objects, half on whatever was generated.
            strategy = st.one_of(generated, generated.map(_real(values, operation.path)))

            @hsettings(
                max_examples=EXAMPLES,
                derandomize=True,  # seeded: the same requests on every run
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case):
                for token in tokens.values():
                    case.call_and_validate(
                        app=app, headers={"Authorization": f"Token {token}"}, checks=CHECKS
                    )

            try:
                run()
            except BaseException as exc:  # a FailureGroup is a BaseExceptionGroup
                failures.append(f"{operation.label} [{mode.value}]: {exc}"[:2000])
