"""Only the jobs URLs (+ admin, login): keeps these tests independent of other apps' views."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/", include("jobs.api_urls")),
    path("jobs/", include("jobs.urls")),
]
