import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import CommandError, call_command

from annotation.datasets import create_dataset_version
from tests.factories import make_token, make_user

from .conftest import make_voted_project

pytestmark = pytest.mark.django_db

A, U = "available", "unsuitable"


@pytest.fixture
def version():
    project, _, _ = make_voted_project(
        [{"sku": f"sku-{i % 4}", "votes": [A, A, U] if i % 2 else [U, U, U]} for i in range(12)]
    )
    return create_dataset_version(project=project, name="exp-v1", seed=0)


def test_export_jsonl_command(version, tmp_path, settings):
    out = tmp_path / "out.jsonl"
    call_command(
        "export_dataset", "exp-v1", "--format", "jsonl", "--out", str(out), stdout=io.StringIO()
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12
    row = rows[0]
    assert set(row) >= {
        "image",
        "image_path",
        "image_url",
        "product_image",
        "sku",
        "title",
        "prompt",
        "label",
        "split",
        "votes",
        "agreement",
    }
    assert row["image_path"].startswith(str(settings.MEDIA_ROOT))
    assert row["image_url"] == f"/images/creatives/{row['creative_id']}/"
    assert row["product_image_url"].startswith("/images/products/")
    assert {r["label"] for r in rows} == {A, U}
    assert {r["votes"] for r in rows} == {3}
    by_sku = {}
    for r in rows:
        by_sku.setdefault(r["sku"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_sku.values())


def test_export_parquet_loads_with_hf_datasets(version, tmp_path):
    out = tmp_path / "out.parquet"
    call_command(
        "export_dataset", "exp-v1", "--format", "parquet", "--out", str(out), stdout=io.StringIO()
    )
    table = pq.read_table(out)
    assert table.num_rows == 12
    import datasets

    ds = datasets.load_dataset(
        "parquet", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert len(ds) == 12
    assert set(ds.unique("label")) == {A, U}
    assert ds[0]["agreement"] in (pytest.approx(2 / 3), 1.0)


def test_export_command_errors(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("export_dataset", "nope", "--out", str(tmp_path / "x"))


def test_streamed_export_api_permissions_and_content(version, client, tmp_path):
    url = "/api/datasets/exp-v1/export/"
    qa = make_user("qa")
    client.force_login(qa)
    assert client.get(url + "?format=jsonl").status_code == 403
    ml = make_user("ml_engineer")
    client.force_login(ml)
    response = client.get(url + "?format=jsonl")
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content).decode()
    assert len(body.splitlines()) == 12
    assert 'filename="exp-v1.jsonl"' in response["Content-Disposition"]

    response = client.get(url + "?format=parquet", HTTP_AUTHORIZATION=f"Token {make_token(ml)}")
    assert response.status_code == 200
    path = tmp_path / "dl.parquet"
    path.write_bytes(b"".join(response.streaming_content))
    assert pq.read_table(path).num_rows == 12
    assert client.get(url + "?format=csv").status_code == 400
    assert client.get("/api/datasets/nope/export/?format=jsonl").status_code == 404


def test_empty_version_exports(tmp_path):
    project, _, _ = make_voted_project([{"sku": "t", "votes": [A, U], "done": True}])
    create_dataset_version(project=project, name="empty")
    out = tmp_path / "e.parquet"
    call_command(
        "export_dataset", "empty", "--format", "parquet", "--out", str(out), stdout=io.StringIO()
    )
    assert pq.read_table(out).num_rows == 0
