from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from audit.services import access_events_batched


class AccessEventMiddleware:
    """Writes the request's access decisions in one batch after the response is built."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with access_events_batched():
            return self.get_response(request)
