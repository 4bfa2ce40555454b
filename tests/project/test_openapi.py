"""The OpenAPI schema covers every API view without a single drf-spectacular warning."""

import yaml
from django.core.management import call_command


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    # --fail-on-warn turns every "unable to guess serializer" or name collision into an error.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    paths = schema["paths"]
    for path in [
        "/api/projects/{slug}/next/",
        "/api/items/{item_id}/annotations/",
        "/api/jobs/",
        "/api/feedback/score/",
        "/api/feedback/models/",
        "/api/projects/{slug}/import/",
        "/api/datasets/{name}/export/",
    ]:
        assert path in paths, path

    export = paths["/api/datasets/{name}/export/"]["get"]["responses"]["200"]["content"]
    assert export["application/x-ndjson"]["schema"]["format"] == "binary"
    assert "application/vnd.apache.parquet" in export

    score = paths["/api/feedback/score/"]["post"]["requestBody"]["content"]
    assert set(score) == {"multipart/form-data"}
    upload = schema["components"]["schemas"]["ScoreUploadsRequest"]["properties"]["image"]
    assert upload["items"]["format"] == "binary"
    assert (
        "multipart/form-data"
        in paths["/api/projects/{slug}/import/"]["post"]["requestBody"]["content"]
    )
