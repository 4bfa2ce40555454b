"""What annotation provides to generation's jobs (see generation.plugins): a dataset version's
creatives by label, and queueing generated creatives into a project."""

from __future__ import annotations

from django.core.exceptions import ValidationError


def training_creatives(dataset: str, label: str):
    from generation.models import Creative

    from .models import DatasetItem, DatasetVersion

    version = DatasetVersion.objects.filter(name=dataset).first()
    if version is None:
        raise ValidationError(f"No dataset version named {dataset!r}.")
    ids = DatasetItem.objects.filter(version=version, label=label).values("creative_id")
    return list(Creative.objects.filter(id__in=ids).select_related("product").order_by("id"))


def push_to_project(project: str, creatives, actor=None) -> int:
    from . import services
    from .models import Project

    target = Project.objects.filter(slug=project).first()
    if target is None:
        raise ValidationError(f"No project {project!r}.")
    return services.add_creatives_to_project(project=target, creatives=creatives, actor=actor)


def project_exists(project: str) -> bool:
    from .models import Project

    return Project.objects.filter(slug=project).exists()


def dataset_exists(dataset: str) -> bool:
    from .models import DatasetVersion

    return DatasetVersion.objects.filter(name=dataset).exists()


def register() -> None:
    from generation import plugins

    plugins.register("training_creatives", training_creatives)
    plugins.register("push_to_project", push_to_project)
    plugins.register("project_exists", project_exists)
    plugins.register("dataset_exists", dataset_exists)
