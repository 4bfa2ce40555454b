"""API plumbing shared by every app: problem responses, the exception handler, bounded paging, the
schema hook that documents the error responses, and the schema-only serializers the API modules
share (they shape /api/docs/, no view uses them).

Every API error is an RFC 9457 problem document (`application/problem+json`):
`{"type", "title", "status", "detail"}` plus our extension members `code` (machine-readable) and,
for invalid input, `errors` (per field). DRF's exceptions go through `exception_handler`;
`ApiProblemMiddleware` covers what never reaches DRF (an unmatched `/api/` URL, a 413 from the
upload limits, an unexpected exception) and reshapes any plain JSON error a view returned."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from . import limits

PROBLEM = "application/problem+json"
API_PREFIX = "/api/"
log = logging.getLogger("rfstudio.api")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem(status: int, detail: str, **extra) -> dict:
    body = {"type": "about:blank", "title": _title(status), "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(status: int, detail: str, *, headers=None, **extra) -> Response:
    return Response(
        problem(status, detail, **extra), status=status, headers=headers, content_type=PROBLEM
    )


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)


def exception_handler(exc, context):
    """DRF's handler, then the body reshaped into a problem document."""
    if isinstance(exc, RequestDataTooBig):
        exc = drf_exceptions.APIException("The request body is too large.")
        exc.status_code = 413
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: the middleware answers 500 as a problem document
    data = response.data
    code = getattr(exc, "default_code", None)
    if isinstance(exc, drf_exceptions.ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        body = problem(response.status_code, _flatten(errors), code="invalid", errors=errors)
    elif isinstance(data, dict) and "detail" in data:
        codes = exc.get_codes() if isinstance(exc, drf_exceptions.APIException) else None
        body = problem(
            response.status_code,
            str(data["detail"]),
            code=codes if isinstance(codes, str) else code,
        )
    else:
        body = problem(response.status_code, _flatten(data), code=code)
    response.data = body
    response.content_type = PROBLEM
    return response


class ApiProblemMiddleware:
    """Under /api/: 404 for unmatched URLs, 413, 500 and any non-problem JSON error become problem
    documents. Other URLs are left alone (the browser gets Django's pages)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(API_PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith(PROBLEM) or response.streaming:
            return response
        detail = _title(response.status_code)
        extra = {}
        if response.get("Content-Type", "").startswith("application/json"):
            try:
                data = json.loads(response.content)
            except ValueError:
                data = None
            if isinstance(data, dict):
                detail = str(data.pop("detail", None) or data.pop("error", None) or detail)
                extra = {k: v for k, v in data.items() if k not in ("type", "title", "status")}
        elif response.status_code == 404:
            detail = f"No API endpoint at {request.path}."
        return _as_response(response.status_code, detail, response, **extra)

    def process_exception(self, request, exception):
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, Http404):
            return _as_response(404, str(exception) or "Not found.")
        if isinstance(exception, PermissionDenied):
            return _as_response(403, str(exception) or "Permission denied.")
        if isinstance(exception, RequestDataTooBig):
            return _as_response(413, "The request body is too large.")
        if isinstance(exception, SuspiciousOperation):
            return _as_response(400, "Bad request.")
        log.exception("Unhandled error in %s %s", request.method, request.path)
        return _as_response(500, "Internal server error; it was logged.")


def _as_response(status, detail, original=None, **extra) -> HttpResponse:
    response = HttpResponse(
        json.dumps(problem(status, detail, **extra)), status=status, content_type=PROBLEM
    )
    if original is not None:
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if original.has_header(header):
                response[header] = original[header]
    return response


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=` is capped (RFSTUDIO_MAX_PAGE_SIZE); `?offset=` past any real table is refused by
    DRF's integer parsing bound."""

    @property
    def max_limit(self):
        return limits.max_page_size()

    def get_offset(self, request):
        return min(super().get_offset(request), limits.MAX_INT32 * 1000)


# --- OpenAPI ---------------------------------------------------------------------------------
class DetailSerializer(serializers.Serializer):
    """DRF's own error body (permission denied, not found) and our plain 400s; the schema hook
    below documents every 4xx as a problem document, which carries `detail` too."""

    detail = serializers.CharField()


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """A multipart file part; plain FileField is documented as a URI outside split components."""


PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem document; `code` and `errors` are extension members.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {},
    },
    "required": ["type", "title", "status", "detail"],
}
_ERROR_TEXT = {
    "400": "Invalid input (`errors` names the fields).",
    "401": "No or invalid credentials.",
    "403": "Your role, project membership or the project's archival forbids this.",
    "404": "No such object (or an id out of range).",
    "405": "Method not allowed.",
    "409": "Conflict with the current state.",
    "413": "Request body too large.",
    "429": "Too many requests (throttled; see Retry-After).",
}


def postprocess_problem_responses(result, generator, request, public):
    """Every operation documents the errors every endpoint can answer (401, 403, 404, 405, 429;
    400 and 413 when it takes input or parameters; 409 kept where a view declared it), each as a
    problem document: one place instead of a list per view."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    ref = {"$ref": "#/components/schemas/Problem"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            codes = {"401", "403", "404", "405", "429"}
            if operation.get("requestBody") or operation.get("parameters"):
                codes |= {"400", "413"}
            codes |= {c for c in responses if c.startswith("4")}
            for code in sorted(codes):
                description = responses.get(code, {}).get("description") or _ERROR_TEXT.get(
                    code, _title(int(code))
                )
                responses[code] = {
                    "content": {PROBLEM: {"schema": ref}},
                    "description": description,
                }
    return result


class RequestSizeLimitMiddleware:
    """413 for any request whose declared body exceeds RFSTUDIO_MAX_UPLOAD_BYTES, before a byte of
    it is read (Django's DATA_UPLOAD_MAX_MEMORY_SIZE does not count file parts)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings

        cap = getattr(settings, "RFSTUDIO_MAX_UPLOAD_BYTES", 0)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if cap and length > cap:
            detail = f"The request body ({length} bytes) is larger than the limit ({cap} bytes)."
            if request.path.startswith(API_PREFIX):
                return _as_response(413, detail)
            return HttpResponse(detail, status=413, content_type="text/plain")
        return self.get_response(request)
