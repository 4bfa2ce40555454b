import io

import numpy as np
import pytest
from PIL import Image
from rest_framework.test import APIClient

from core.roles import ANNOTATOR, ML_ENGINEER, QA
from feedback import services
from feedback.models import CreativeScore
from tests.factories import make_creatives, make_user


def client_for(role):
    client = APIClient()
    if role is not None:
        client.force_authenticate(make_user(role))
    return client


def png(mode="RGB", size=(40, 32), color=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else (*color, 255)).save(buf, format="PNG")
    buf.seek(0)
    buf.name = f"x-{mode}.png"
    return buf


@pytest.fixture
def scored(register):
    model = register()
    services.promote_model(model=model)
    creatives = make_creatives(3)
    probs = np.full((len(creatives), 6), 0.02)
    probs[:, 0] = 0.9
    services.store_scores(model=model, creative_ids=[c.pk for c in creatives], probs=probs)
    return model, creatives


@pytest.mark.parametrize(
    "role,read,write",
    [
        (None, {401, 403}, {401, 403}),
        (ANNOTATOR, {403}, {403}),
        (QA, {200}, {403}),
        (ML_ENGINEER, {200}, {200}),
        ("superuser", {200}, {200}),
    ],
)
def test_permissions_per_role(scored, role, read, write):
    model, creatives = scored
    client = client_for(role)
    for url in (
        "/api/feedback/models/",
        f"/api/feedback/models/{model.name}/",
        f"/api/creatives/{creatives[0].pk}/scores/",
    ):
        assert client.get(url).status_code in read, url
    response = client.post(
        "/api/feedback/score/", {"image": png(), "product": png("RGBA")}, format="multipart"
    )
    assert response.status_code in write, response.content


def test_creative_scores_and_model_detail(scored):
    model, creatives = scored
    client = client_for(QA)
    body = client.get(f"/api/creatives/{creatives[0].pk}/scores/").json()
    assert body["scores"][0]["model"] == model.name
    assert body["scores"][0]["predicted_label"] == "available"
    detail = client.get(f"/api/feedback/models/{model.name}/").json()
    assert detail["status"] == "active" and detail["metrics"]["accuracy"] == 0.5
    assert client.get("/api/feedback/models/nope/").status_code == 404


def test_score_uploads(scored):
    client = client_for(ML_ENGINEER)
    before = CreativeScore.objects.count()
    response = client.post(
        "/api/feedback/score/",
        {
            "image": [png(), png(color=(10, 200, 10))],
            "product": [png("RGBA"), png("RGBA")],
            "caption": ["a red mug", "a green mug"],
        },
        format="multipart",
    )
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == 2
    assert sum(results[0]["probs"].values()) == pytest.approx(1.0, abs=1e-3)
    assert CreativeScore.objects.count() == before  # nothing stored


def test_score_bad_image_is_400_and_stores_nothing(scored):
    client = client_for(ML_ENGINEER)
    before = CreativeScore.objects.count()
    bad = io.BytesIO(b"this is not a png")
    bad.name = "broken.png"
    response = client.post(
        "/api/feedback/score/",
        {"image": [png(), bad], "product": [png("RGBA"), png("RGBA")]},
        format="multipart",
    )
    assert response.status_code == 400
    assert "broken.png" in response.json()["detail"]
    deep = io.BytesIO()
    Image.new("I;16", (32, 32), 40000).save(deep, format="PNG")  # would clip to white
    deep.seek(0)
    deep.name = "deep.png"
    response = client.post(
        "/api/feedback/score/", {"image": deep, "product": png("RGBA")}, format="multipart"
    )
    assert response.status_code == 400 and "8-bit" in response.json()["detail"]
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: shown rotated 90° counter-clockwise by browsers
    Image.new("RGB", (48, 32), (20, 90, 200)).save(turned, format="JPEG", exif=exif)
    turned.seek(0)
    turned.name = "turned.jpg"
    response = client.post(
        "/api/feedback/score/", {"image": turned, "product": png("RGBA")}, format="multipart"
    )
    assert response.status_code == 400 and "EXIF orientation" in response.json()["detail"]
    mismatch = client.post("/api/feedback/score/", {"image": png()}, format="multipart")
    assert mismatch.status_code == 400 and "product" in mismatch.json()["detail"]
    unknown = client.post(
        "/api/feedback/score/",
        {"image": png(), "product": png("RGBA"), "model": "nope"},
        format="multipart",
    )
    assert unknown.status_code == 400
    assert CreativeScore.objects.count() == before


def test_promote_via_api(register):
    model = register()
    assert client_for(QA).post(f"/api/feedback/models/{model.name}/promote/").status_code == 403
    response = client_for(ML_ENGINEER).post(f"/api/feedback/models/{model.name}/promote/")
    assert response.status_code == 200 and response.json()["status"] == "active"
