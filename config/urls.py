from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

import core.converters  # noqa: F401 - registers <id:...> before the app URL confs load
from core.policy import rule

# Schema and docs are public (they describe, they do not serve data); declared for the matrix test.
schema_view = rule("public")(
    SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[])
)
docs_view = rule("public")(
    SpectacularSwaggerView.as_view(
        url_name="api-schema", permission_classes=[], authentication_classes=[]
    )
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/schema/", schema_view, name="api-schema"),
    path("api/docs/", docs_view, name="api-docs"),
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
