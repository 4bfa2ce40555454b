"""Style references end to end: registry, CLI, API, admin form, provenance and its page."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from core.roles import ML_ENGINEER
from generation.models import DiffusionModel, Generation
from jobs.models import Job
from tests.factories import PASSWORD, make_user
from tests.generation._tiny import (
    _components,
    make_cutout_product,
    png_bytes,
    register_tiny,
    register_tiny_style,
    style_image,
)

pytestmark = pytest.mark.django_db


def _stored_style_files() -> list[str]:
    root = "style_references"
    if not default_storage.exists(root):
        return []
    return [f for d in default_storage.listdir(root)[0]
            for f in default_storage.listdir(f"{root}/{d}")[1]]  # fmt: skip


def _image(creative) -> np.ndarray:
    with default_storage.open(creative.image.name, "rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())).convert("RGB"))


def test_registry_validates_and_checksums_the_adapter(tmp_path, capsys):
    from generation.ml.config import preset
    from generation.ml.pipeline import build_components, save_components
    from generation.ml.style import build_tiny_style_adapter

    plain = register_tiny(tmp_path, "plain")
    folder = tmp_path / "model-plain"
    weights, encoder = build_tiny_style_adapter(_components("pixel_unshuffle").unet,
                                                tmp_path / "style")  # fmt: skip
    call_command("register_diffusion_model", str(folder), "--name", "styled",
                 "--ip-adapter", str(weights), "--image-encoder", str(encoder))  # fmt: skip
    assert "style reference (IP-Adapter)" in capsys.readouterr().out
    styled = DiffusionModel.objects.get(name="styled")
    assert styled.supports_style_reference and not plain.supports_style_reference
    assert styled.checksum != plain.checksum  # the adapter and encoder are in the checksum
    assert styled.config["style_adapter"]["projection"] == "ImageProjection"
    assert plain.config["style_adapter"] is None

    # Refused, naming the part, and nothing registered.
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(CommandError, match="Not a usable IP-Adapter.*unreadable"):
        call_command("register_diffusion_model", str(folder), "--name", "b1",
                     "--ip-adapter", str(broken), "--image-encoder", str(encoder))  # fmt: skip
    with pytest.raises(CommandError, match="both the IP-Adapter weights"):
        call_command("register_diffusion_model", str(folder), "--name", "b2",
                     "--ip-adapter", str(weights))  # fmt: skip
    with pytest.raises(CommandError, match="both the IP-Adapter weights"):
        call_command("register_diffusion_model", str(folder), "--name", "b3",
                     "--image-encoder", str(encoder))  # fmt: skip
    wider = build_components(preset("tiny", text_layers=1))  # [32, 64] channels, not [16, 32]
    other = save_components(wider, tmp_path / "other")
    with pytest.raises(CommandError, match="IP-Adapter"):  # made for another UNet
        call_command("register_diffusion_model", str(other), "--name", "b4",
                     "--ip-adapter", str(weights), "--image-encoder", str(encoder))  # fmt: skip
    assert set(DiffusionModel.objects.values_list("name", flat=True)) == {"plain", "styled"}


def test_cli_generates_with_a_style_reference_and_records_it(tmp_path):
    register_tiny_style(tmp_path, "styled")
    make_cutout_product("S-1")
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(style_image()))
    sha = hashlib.sha256(ref.read_bytes()).hexdigest()
    common = ["generate_creatives", "--model", "styled", "--sku", "S-1", "--seeds", "4",
              "--steps", "2", "--guidance", "2", "--foreground"]  # fmt: skip
    call_command(*common, "--style-reference", str(ref), "--style-scale", "0.8")
    call_command(*common, "--style-reference", str(ref), "--style-scale", "0.8")
    call_command(*common)
    jobs = list(Job.objects.filter(kind="generate").order_by("id"))
    assert all(j.status == "succeeded" for j in jobs)
    name = jobs[0].params["style_reference"]
    assert name == f"style_references/{sha[:2]}/{sha}.png" and jobs[0].params["style_scale"] == 0.8
    assert jobs[0].inputs["style_reference"] == name
    with default_storage.open(name, "rb") as fh:
        assert fh.read() == ref.read_bytes()  # stored as uploaded, through the storage API
    first, second, plain = (
        list(Generation.objects.filter(job=j).select_related("creative").order_by("group"))
        for j in jobs
    )
    style = first[0].creative.params["style_reference"]
    assert style == {"image": name, "sha256": sha, "scale": 0.8}
    assert plain[0].creative.params["style_reference"] is None
    # Deterministic with the reference (same bytes: the same creative), different without it.
    assert [g.creative_id for g in first] == [g.creative_id for g in second]
    assert all(a.creative_id != b.creative_id for a, b in zip(first, plain, strict=True))

    # The provenance page shows the reference and serves its bytes.
    user = make_user(ML_ENGINEER)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    page = client.get(f"/generation/creatives/{first[0].creative_id}/")
    assert page.status_code == 200 and sha.encode() in page.content
    assert f"/generation/images/{first[0].creative_id}/style/".encode() in page.content
    image = client.get(f"/generation/images/{first[0].creative_id}/style/")
    assert image.status_code == 200 and image.content == ref.read_bytes()
    assert image["Content-Type"] == "image/png"
    assert client.get(f"/generation/images/{plain[0].creative_id}/style/").status_code == 404


def test_cli_refuses_a_style_reference_the_model_cannot_take(tmp_path):
    register_tiny(tmp_path, "plain")
    register_tiny_style(tmp_path, "styled")
    make_cutout_product("S-2")
    ref = tmp_path / "ref.png"
    ref.write_bytes(png_bytes(style_image()))
    base = ["generate_creatives", "--sku", "S-2", "--seeds", "0", "--steps", "1"]
    with pytest.raises(CommandError, match="'plain' has no IP-Adapter"):
        call_command(*base, "--model", "plain", "--style-reference", str(ref))
    with pytest.raises(CommandError, match="not a usable image"):
        bad = tmp_path / "bad.png"
        bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
        call_command(*base, "--model", "styled", "--style-reference", str(bad))
    with pytest.raises(CommandError, match="No such file"):
        call_command(*base, "--model", "styled", "--style-reference", str(tmp_path / "nope.png"))
    with pytest.raises(CommandError, match="Unknown SKU"):  # any other refusal: nothing stored
        call_command("generate_creatives", "--sku", "NOPE", "--model", "styled",
                     "--style-reference", str(ref))  # fmt: skip
    assert not Job.objects.exists() and _stored_style_files() == []


def test_api_upload_then_launch_and_the_error_paths(tmp_path):
    register_tiny(tmp_path, "plain")
    register_tiny_style(tmp_path, "styled")
    make_cutout_product("S-3")
    api = APIClient()
    api.force_authenticate(make_user(ML_ENGINEER))
    data = png_bytes(style_image())
    up = api.post("/api/generation/style-references/",
                  {"image": SimpleUploadedFile("r.png", data)}, format="multipart")  # fmt: skip
    assert up.status_code == 201, up.content
    body = up.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["width"] == 40
    again = api.post("/api/generation/style-references/",
                     {"image": SimpleUploadedFile("r.png", data)}, format="multipart")  # fmt: skip
    assert again.status_code == 200 and again.json()["image"] == body["image"]
    junk_file = SimpleUploadedFile("r.png", b"junk")
    junk = api.post("/api/generation/style-references/", {"image": junk_file}, format="multipart")
    assert junk.status_code == 400 and "not a usable image" in str(junk.json())

    params = {"skus": "S-3", "seeds": "0", "steps": 1, "style_reference": body["image"]}
    refused = api.post("/api/generation/jobs/", {"params": {**params, "model": "plain"}},
                       format="json")  # fmt: skip
    assert refused.status_code == 400 and "has no IP-Adapter" in str(refused.json())
    for bad_name, message in (("../../etc/passwd", "Bad style reference"),
                              ("jobs/x.png", "give a stored image under"),
                              ("style_references/ab/missing.png", "No stored image")):  # fmt: skip
        bad = api.post("/api/generation/jobs/",
                       {"params": {**params, "model": "styled", "style_reference": bad_name}},
                       format="json")  # fmt: skip
        assert bad.status_code == 400 and message in str(bad.json()), bad_name
    assert not Job.objects.exists()
    ok = api.post(
        "/api/generation/jobs/",
        {"params": {**params, "model": "styled", "style_scale": 1.2}},
        format="json",
    )
    assert ok.status_code == 201, ok.content
    job = Job.objects.get()
    assert job.params["style_reference"] == body["image"] and job.params["style_scale"] == 1.2
    assert "style_reference_upload" not in job.params
    models = {m["name"]: m for m in api.get("/api/generation/models/").json()}
    assert models["styled"]["supports_style_reference"] is True
    assert models["plain"]["supports_style_reference"] is False


def test_admin_confirmation_form_takes_an_uploaded_reference(tmp_path):
    register_tiny(tmp_path, "plain")
    register_tiny_style(tmp_path, "styled")
    product = make_cutout_product("S-4")
    user = make_user(ML_ENGINEER, is_staff=True)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    url = "/admin/generation/product/"
    action = {"action": "generate_creatives", "_selected_action": [product.pk]}
    confirm = client.post(url, action)
    assert b'enctype="multipart/form-data"' in confirm.content
    assert b"job-style_reference_upload" in confirm.content
    data = png_bytes(style_image())
    fields = {**action, "post": "yes", "job-skus": "S-4", "job-seeds": "0", "job-steps": "1",
              "job-guidance": "7.5", "job-batch_size": "4", "job-size": "0",
              "job-style_scale": "0.7"}  # fmt: skip
    refused = client.post(
        url,
        {
            **fields,
            "job_key": "k0",
            "job-model": "plain",
            "job-style_reference_upload": SimpleUploadedFile("r.png", data),
        },
    )
    assert refused.status_code == 200 and b"has no IP-Adapter" in refused.content
    assert not Job.objects.exists() and _stored_style_files() == []
    done = client.post(
        url,
        {
            **fields,
            "job_key": "k1",
            "job-model": "styled",
            "job-style_reference_upload": SimpleUploadedFile("r.png", data),
        },
    )
    assert done.status_code == 302
    job = Job.objects.get()
    sha = hashlib.sha256(data).hexdigest()
    assert job.params["style_reference"].endswith(f"{sha}.png") and job.params["style_scale"] == 0.7
    assert _stored_style_files() == [f"{sha}.png"]
