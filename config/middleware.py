"""Site-wide answers that are neither an app's nor the security gates'."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin

from config.api import page_not_found


class NotFoundPageMiddleware(MiddlewareMixin):
    """A view's Http404 gets the site's 404 page (JSON under /api/), with DEBUG on as well.

    DEBUG (`make run`) would answer it with Django's technical page. For an agent a 404 is
    an everyday answer (a conversation outside their segment, an expired grant), so the
    demo shows what production shows; an unknown URL still gets the technical page.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, Http404):
            return page_not_found(request, exception)
        return None
