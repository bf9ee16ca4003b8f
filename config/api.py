"""The API's one exception handler: domain errors become consistent JSON answers.

Every error body has a `detail` string; a validation error also keeps its per-field
`errors`. Loaders' Http404 is already a JSON 404 through DRF's own handler; unknown paths
under /api/ reach a catch-all view. What Django itself answers before or around DRF (a
refused Host header, an unhandled exception) goes through the error handlers below, which
answer JSON under /api/ and render the site's own pages (templates/4xx.html, 5xx.html)
everywhere else.
"""

from __future__ import annotations

import sys
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from channels_app.common.retry import TRANSIENT_DATABASE_ERRORS
from inbox import policy
from inbox.selectors import InvalidFilter
from inbox.services import InvalidRequest, OutboundRefused


class BadRequest(exceptions.APIException):
    status_code = 400
    default_detail = "The request is not valid."
    default_code = "invalid"


def _first_message(errors: Any, path: str = "") -> str:
    """The first message of a (nested) validation error, with the field it is about."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            field = str(key) if key != "non_field_errors" else ""
            return _first_message(value, f"{path}.{field}" if path and field else path or field)
    if isinstance(errors, list) and errors:
        return _first_message(errors[0], path)
    return f"{path}: {errors}" if path else str(errors)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    errors = None
    if isinstance(exc, policy.StepUpRequired):
        # The same body the pages' gate sends: a client can tell "ask for a code" apart.
        return Response(exc.body(), status=403)
    if isinstance(exc, OutboundRefused):
        # The findings (masked) with the reason: a client can show them, or justify.
        return Response(exc.body(), status=400)
    if isinstance(exc, InvalidRequest | InvalidFilter):
        exc = BadRequest(str(exc))
    elif isinstance(exc, policy.Denied):
        exc = exceptions.PermissionDenied(str(exc))
    elif isinstance(exc, exceptions.ValidationError):
        errors = exc.detail
        exc = BadRequest(_first_message(exc.detail))
    response = drf_exception_handler(exc, context)
    if response is not None and errors is not None:
        response.data["errors"] = errors
    return response


API_PREFIX = "/api/"


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


# What a client is told to wait before trying again while the database is away (a restart
# or a failover takes seconds).
UNAVAILABLE_RETRY_AFTER_SECONDS = 5
UNAVAILABLE_DETAIL = "The service is briefly unavailable; try again shortly."


def server_error(request: HttpRequest) -> HttpResponse:
    # Django calls this inside its `except` block: the exception is the one being handled.
    if isinstance(sys.exception(), TRANSIENT_DATABASE_ERRORS):
        return _service_unavailable(request)
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


def _service_unavailable(request: HttpRequest) -> HttpResponse:
    """The database could not be reached (down, restarting, failing over): nothing is
    wrong with the request, and the same one will succeed once it is back."""
    response: HttpResponse
    if request.path_info.startswith(API_PREFIX):
        response = JsonResponse({"detail": UNAVAILABLE_DETAIL}, status=503)
    else:
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER_SECONDS)
    return response
