"""Media on S3-compatible object storage (DJANGO_STORAGE=s3, django-storages + boto3), against a
local S3 server the test starts (moto's server mode on 127.0.0.1, a real HTTP endpoint): imports
store creatives in the bucket (nothing on local disk), the API's image URLs stream them through
/images/... behind the login, uploads for import jobs are staged in the bucket and removed, and
workers read them through the storage API into a local cache (RFNet samples)."""

import hashlib
import json
import socket
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from annotation.models import Item
from feedback.samples import creative_sample
from generation.models import Creative
from jobs import runner
from jobs.models import Job
from tests.datasets.conftest import ManifestBuilder
from tests.factories import make_token, make_user

from .test_settings import _manage

pytestmark = pytest.mark.django_db


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch):
    """A fresh bucket as the default storage (the same options config/settings.py builds)."""
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "rfstudio-test",
        "AWS_SECRET_ACCESS_KEY": "rfstudio-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    name = f"rfs-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": True,
            },
        },
    }
    yield client, name


def _keys(client, bucket, prefix="") -> list[str]:
    listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def test_import_into_s3_and_fetch_through_images(bucket, client, settings, tmp_path):
    s3, name = bucket
    builder = ManifestBuilder(tmp_path / "in")
    rows = [builder.row(i, sku="S3-SKU") for i in range(3)]
    call_command("import_creatives", str(builder.write(rows)), "--project", "s3p")

    creative = Creative.objects.get(external_id="ext-0")
    keys = _keys(s3, name)
    assert creative.image.name in keys and creative.thumbnail.name in keys
    assert creative.product.image.name in keys
    assert not (settings.MEDIA_ROOT / "creatives").exists()  # nothing on local disk
    original = (builder.root / rows[0]["image"]).read_bytes()
    assert hashlib.sha256(original).hexdigest() == creative.sha256

    # The API hands out /images/... URLs (not bucket or /media/ URLs) and they serve the bytes.
    annotator = make_user("annotator")
    api = {"HTTP_AUTHORIZATION": f"Token {make_token(annotator)}"}
    payload = client.post("/api/projects/s3p/next/", **api).json()
    assert payload["image_url"].startswith("/images/creatives/")
    assert payload["product_image_url"].startswith("/images/products/")
    client.force_login(annotator)
    item = Item.objects.get(pk=payload["item_id"])
    for url, expected in (
        (payload["image_url"], item.creative.image.name),
        (payload["thumbnail_url"], item.creative.thumbnail.name),
        (payload["product_image_url"], item.creative.product.image.name),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        body = b"".join(response.streaming_content)
        assert body == s3.get_object(Bucket=name, Key=expected)["Body"].read()
    assert b"".join(client.get(f"/images/creatives/{creative.pk}/").streaming_content) == original

    # Workers read through the storage API: RFNet samples are local cached copies.
    sample = creative_sample(creative)
    assert sample is not None
    assert Path(sample.creative_path).read_bytes() == original
    assert str(settings.RFSTUDIO_CACHE_DIR) in sample.creative_path


def test_import_job_upload_is_staged_in_s3_and_removed(bucket, client, tmp_path):
    s3, name = bucket
    builder = ManifestBuilder(tmp_path / "up")
    rows = [builder.row(i, label="available") for i in range(2)]
    manifest = "\n".join(json.dumps(r) for r in rows).encode()
    files = [
        SimpleUploadedFile(p.name, p.read_bytes())
        for p in {builder.root / r[k] for r in rows for k in ("image", "product_image")}
    ]
    client.force_login(make_user("ml_engineer"))
    response = client.post(
        "/api/projects/s3up/import/",
        {"manifest": SimpleUploadedFile("m.jsonl", manifest), "images": files},
    )
    assert response.status_code == 202, response.content
    assert _keys(s3, name, "imports/")  # staged in the bucket for a worker on any host
    job_id = response.json()["job"]
    runner.execute(job_id=job_id, attempt=1, worker_id="test", dispatch_retries=False)
    job = Job.objects.get(pk=job_id)
    assert job.status == "succeeded", job.error
    assert job.result["created"] == 2 and job.result["labels_created"] == 2
    assert _keys(s3, name, "imports/") == []
    assert len(_keys(s3, name, "creatives/")) == 2


def test_s3_settings_from_the_environment(tmp_path):
    env = {"DJANGO_DEBUG": "1", "RFSTUDIO_VAR_DIR": str(tmp_path), "DJANGO_STORAGE": "s3"}
    missing = _manage("check", env=env)
    assert missing.returncode != 0 and "AWS_STORAGE_BUCKET_NAME" in missing.stderr
    shown = _manage(
        "shell",
        "-c",
        "from django.conf import settings; import json; "
        "print(json.dumps(settings.STORAGES['default']))",
        env={
            **env,
            "AWS_STORAGE_BUCKET_NAME": "media",
            "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_LOCATION": "rfstudio",
        },
    )
    assert shown.returncode == 0, shown.stderr
    default = json.loads(shown.stdout.strip().splitlines()[-1])
    assert default["BACKEND"] == "storages.backends.s3.S3Storage"
    options = default["OPTIONS"]
    assert options["bucket_name"] == "media" and options["location"] == "rfstudio"
    assert options["endpoint_url"] == "http://127.0.0.1:9000" and options["default_acl"] is None
    bad = _manage("check", env={**env, "DJANGO_STORAGE": "ftp"})
    assert bad.returncode != 0 and "DJANGO_STORAGE" in bad.stderr
