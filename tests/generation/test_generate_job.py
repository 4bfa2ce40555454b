"""The generate job through its CLI twin: provenance, paste-back, determinism, manifest, project."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from PIL import Image

from generation.ml import processing
from generation.models import Generation
from jobs.models import Job
from tests.factories import make_project
from tests.generation._tiny import cutout, make_cutout_product, register_tiny

pytestmark = pytest.mark.django_db


def _image(creative) -> np.ndarray:
    with default_storage.open(creative.image.name, "rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())).convert("RGB"))


def test_generate_stores_creatives_with_provenance(tmp_path):
    model = register_tiny(tmp_path)
    make_cutout_product("A-1")
    make_cutout_product("A-2", category="electronics", w=30, h=18)
    project = make_project(slug="gen")
    manifest = tmp_path / "out.jsonl"
    call_command("generate_creatives", "--model", "latest", "--sku", "A-1", "A-2",
                 "--seeds", "0,1", "--steps", "2", "--project", "gen", "--foreground",
                 "--manifest-out", str(manifest), "--guidance", "2")  # fmt: skip
    job = Job.objects.get(kind="generate")
    rows = list(Generation.objects.filter(job=job).select_related("creative", "product"))
    assert len(rows) == 2 * 3 * 2  # products × default templates × seeds
    assert job.result["images"] == 12 and job.result["queued"] == 12
    assert project.items.count() == 12
    g = rows[0]
    params = g.creative.params
    assert params["model"] == model.name and params["model_checksum"] == model.checksum
    assert params["steps"] == 2 and params["guidance_scale"] == 2.0 and params["size"] == 32
    assert params["category_tokens"] and g.creative.prompt.startswith(params["category_tokens"][0])
    assert g.creative.seed == g.seed and g.creative.negative_prompt
    # The placement stored is the generator's input: the cut-out placed there matches every
    # opaque pixel of the stored image exactly (paste-back survives storage).
    prep = processing.prepare(cutout(), 32, box=tuple(params["placement"]))
    img, opaque = _image(g.creative), prep.placed[..., 3] == 255
    assert opaque.sum() > 50 and np.array_equal(img[opaque], prep.placed[..., :3][opaque])
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(lines) == 12 and {"image", "sku", "placement", "model", "steps"} <= set(lines[0])


def test_same_request_gives_the_same_bytes(tmp_path):
    register_tiny(tmp_path, "tiny-det")
    make_cutout_product("B-1")
    args = ["generate_creatives", "--model", "tiny-det", "--sku", "B-1", "--seeds", "3",
            "--steps", "2", "--foreground"]  # fmt: skip
    call_command(*args)
    call_command(*args)
    first, second = (list(Generation.objects.filter(job=j).order_by("group"))
                     for j in Job.objects.filter(kind="generate").order_by("id"))  # fmt: skip
    # Identical bytes: the same Creative row (sha256 is unique) for every row of both jobs.
    assert [g.creative_id for g in first] == [g.creative_id for g in second]


def test_bad_requests_are_refused_by_field(tmp_path):
    register_tiny(tmp_path, "tiny-x")
    make_cutout_product("C-1")
    with pytest.raises(CommandError, match="Unknown SKU"):
        call_command("generate_creatives", "--sku", "NOPE", "--foreground")
    with pytest.raises(CommandError, match="Bad seed"):
        call_command("generate_creatives", "--sku", "C-1", "--seeds", "a,b", "--foreground")
    with pytest.raises(CommandError, match="No diffusion model"):
        call_command("generate_creatives", "--model", "missing", "--all", "--foreground")
    with pytest.raises(CommandError, match="No project"):
        call_command("generate_creatives", "--all", "--project", "nope", "--foreground")
    bad = tmp_path / "p.json"
    bad.write_text('[{"prompt": ""}]')
    with pytest.raises(CommandError, match="prompt 0"):
        call_command("generate_creatives", "--all", "--prompts", str(bad), "--foreground")
    with pytest.raises(CommandError, match="needs --foreground"):
        call_command("generate_creatives", "--all", "--manifest-out", str(tmp_path / "m"))
    assert not Job.objects.exists() and not Generation.objects.exists()
