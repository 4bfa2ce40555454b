"""Schema-only pieces shared by the API modules: they shape /api/docs/, no view uses them."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class DetailSerializer(serializers.Serializer):
    """DRF's own error body (permission denied, not found) and our plain 400s."""

    detail = serializers.CharField()


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A multipart file part; plain FileField is documented as a URI outside split components."""
