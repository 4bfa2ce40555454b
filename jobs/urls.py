from django.urls import path

import core.converters  # noqa: F401 - <id:...>, whichever URL conf loads first

from . import views

app_name = "jobs"

urlpatterns = [
    path("", views.job_list, name="list"),
    path("<id:job_id>/", views.job_detail, name="detail"),
    path("<id:job_id>/status/", views.job_status, name="status"),
    path("<id:job_id>/cancel/", views.job_cancel, name="cancel"),
    path("<id:job_id>/retry/", views.job_retry, name="retry"),
    path("<id:job_id>/artifacts/<id:artifact_id>/", views.artifact_download, name="artifact"),
]
