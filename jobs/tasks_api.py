"""The one import of the Tasks API. On Django 6 replace the line below with
`from django.tasks import ...` — nothing else in RFStudio names the backport."""

from django_tasks import TaskContext, TaskResultStatus, default_task_backend, task, task_backends

__all__ = ["TaskContext", "TaskResultStatus", "default_task_backend", "task", "task_backends"]
