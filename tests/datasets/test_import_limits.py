"""Bad import options and contradictory manifests are refused by name, never a traceback."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from annotation.importing import ManifestError, import_manifest_file
from annotation.models import Item, Project
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _command(path, *args):
    call_command("import_creatives", str(path), *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_long_slug_and_huge_overlap_are_command_errors(builder):
    path = builder.write([builder.row(0)])
    with pytest.raises(CommandError, match="project slug must be at most 100"):
        _command(path, "--project", "s" * 120)
    with pytest.raises(CommandError, match="overlap must be an integer between 1 and"):
        _command(path, "--project", "ok", "--overlap", str(10**30))
    with pytest.raises(CommandError, match="project slug must be letters"):
        _command(path, "--project", "no spaces")
    assert not Project.objects.exists()


def test_api_names_the_bad_option(builder):
    client = Client()
    client.force_login(make_user("ml_engineer"))
    manifest = builder.write([builder.row(0)])
    with manifest.open("rb") as fh:
        r = client.post(f"/api/projects/{'s' * 120}/import/", {"manifest": fh})
    assert r.status_code == 400 and "slug" in r.json()["detail"]
    assert r["Content-Type"].startswith("application/problem+json")
    with manifest.open("rb") as fh:
        r = client.post("/api/projects/ok/import/", {"manifest": fh, "overlap": str(10**30)})
    assert r.status_code == 400 and "overlap" in r.json()["detail"]
    assert not Project.objects.exists()


def test_prompt_and_title_lengths_are_limited_per_line(builder, settings):
    rows = [builder.row(0), builder.row(1, prompt="x" * 4001), builder.row(2, title="t" * 501)]
    with pytest.raises(ManifestError) as exc:
        import_manifest_file(builder.write(rows), project_slug="p")
    assert exc.value.errors == [
        (2, "field 'prompt' is longer than 4000 characters"),
        (3, "field 'title' is longer than 500 characters"),
    ]
    assert not Item.objects.exists()


def test_same_image_with_another_label_names_the_line(builder):
    first = builder.row(0, label="available")
    again = dict(first, label="unsuitable", id="ext-again")
    with pytest.raises(ManifestError) as exc:
        import_manifest_file(builder.write([first, builder.row(1), again]), project_slug="p")
    [(line, message)] = exc.value.errors
    assert line == 3 and "line 1" in message and "'unsuitable'" in message
    # The same image with the same label stays a harmless repeat.
    result = import_manifest_file(
        builder.write([first, dict(first)], name="ok.jsonl"), project_slug="p"
    )
    assert result.created == 1


def test_one_id_for_two_images_names_the_line(builder):
    rows = [builder.row(0), builder.row(1, id="ext-0")]
    with pytest.raises(ManifestError) as exc:
        import_manifest_file(builder.write(rows), project_slug="p")
    assert exc.value.errors == [(2, "id 'ext-0' is already used on line 1 for another image")]
    assert not Project.objects.exists()


def test_dataset_ratios_must_be_finite(client):
    from tests.factories import make_project

    project = make_project(n_items=2)
    client.force_login(make_user("ml_engineer"))
    for ratios in ("nan,1,1", "inf,0,0", "0.8,0.1", "a,b,c", "1e999,0,0"):
        r = client.post(
            f"/api/projects/{project.slug}/datasets/",
            {"name": "v1", "ratios": ratios},
            content_type="application/json",
        )
        assert r.status_code == 400, (ratios, r.content)
        assert "ratios" in r.json()["detail"]
