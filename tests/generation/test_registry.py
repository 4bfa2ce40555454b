"""The diffusion-model registry: offline validation, checksum, names, `latest`."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from generation import selectors
from generation.ml.pipeline import save_components
from generation.models import DiffusionModel
from tests.generation._tiny import tiny_pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def folder(tmp_path):
    return save_components(tiny_pipeline().c, tmp_path / "tiny")


def test_register_validates_and_checksums(folder, capsys):
    call_command("register_diffusion_model", str(folder), "--name", "tiny-a")
    model = DiffusionModel.objects.get(name="tiny-a")
    assert len(model.checksum) == 64 and model.status == "ready"
    assert model.config["native_size"] == 32 and model.config["parameters"]["unet"] > 0
    assert "Registered tiny-a" in capsys.readouterr().out
    call_command("register_diffusion_model", str(folder), "--name", "tiny-b", "--parent", "tiny-a")
    b = selectors.resolve_diffusion_model("latest")
    assert b.name == "tiny-b" and b.parent.name == "tiny-a" and b.checksum == model.checksum
    assert [m.name for m in selectors.lineage_chain(b)] == ["tiny-b", "tiny-a"]


def test_broken_folders_and_bad_names_are_refused(folder, tmp_path):
    (folder / "text_encoder" / "config.json").write_text("{not json")
    with pytest.raises(CommandError, match="text_encoder"):
        call_command("register_diffusion_model", str(folder), "--name", "broken")
    with pytest.raises(CommandError, match="missing subfolder"):
        call_command("register_diffusion_model", str(tmp_path), "--name", "empty")
    with pytest.raises(CommandError, match="reserved"):
        call_command("register_diffusion_model", str(folder), "--name", "latest")
    with pytest.raises(CommandError, match="does not exist"):
        call_command("register_diffusion_model", str(folder), "--name", "x",
                     "--controlnet", str(tmp_path / "nope"))  # fmt: skip
    assert not DiffusionModel.objects.exists()
    with pytest.raises(CommandError, match="No diffusion model"):
        call_command("register_diffusion_model", str(folder), "--name", "y", "--parent", "latest")


def test_duplicate_names_are_refused(folder):
    call_command("register_diffusion_model", str(folder), "--name", "dup")
    with pytest.raises(CommandError, match="already exists"):
        call_command("register_diffusion_model", str(folder), "--name", "dup")
    assert DiffusionModel.objects.count() == 1
