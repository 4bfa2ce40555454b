from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("jobs.api_urls")),
    path("api/", include("annotation.api_urls")),
    path("api/", include("annotation.api_datasets_urls")),
    path("api/", include("feedback.api_urls")),
    path("api/", include("ranking.api_urls")),
    path("jobs/", include("jobs.urls")),
    path("feedback/", include("feedback.urls")),
    path("generation/", include("generation.urls")),
    path("api/generation/", include("generation.api_urls")),
    path("ranking/", include("ranking.urls")),
    path("", include("annotation.urls")),
]
