"""The HTTP side of the ASGI application: Django's ASGI handler, with each request's
middleware and view run in one hand-over to a thread of a fixed pool.

Every gate and view here is synchronous. Django's own ASGI handler still runs a request
in pieces: into a thread for the request_started signal, into a thread for the sync
gates, back to the event loop for its async innermost layer, into a thread again for
the view, and into a thread for the response's close. Each request's thread-sensitive
calls also get a thread of their own (asgiref's ThreadSensitiveContext makes one per
request), so no connection outlives its request. A signed webhook spent more time in
those hand-overs than in its own work: 3.7 ms a delivery, 2.1 ms in one hand-over
(tests/benchmarks/webhooks.py).

Here a request takes one thread from `request_executor` (HTTP_THREADS of them, reused)
for everything between reading its body and sending its response, as under WSGI; the
loop only reads, sends, and serves static files (ServeStatic is async-only, and a static
file needs no thread). A full pool queues requests for a thread instead of failing them.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import close_old_connections
from django.http import FileResponse, HttpResponseBase, HttpResponseNotFound
from django.urls import set_script_prefix
from servestatic.middleware import ServeStaticMiddleware
from servestatic.responders import MissingFileError


@functools.cache
def request_executor() -> ThreadPoolExecutor:
    """Made on first use (settings are read then), once per process, sized by
    HTTP_THREADS; its threads start as requests need them."""
    return ThreadPoolExecutor(max_workers=settings.HTTP_THREADS, thread_name_prefix="http")


def _in_pool(function: Any) -> Any:
    return sync_to_async(function, thread_sensitive=False, executor=request_executor())


class OneHandOverHandler(ASGIHandler):
    def __init__(self) -> None:
        # Not ASGIHandler's: it builds the middleware chain async, with the hand-overs above.
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.static_files = ServeStaticMiddleware(_in_pool(self.respond))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"This handler serves HTTP, not {scope['type']}.")
        # No ThreadSensitiveContext: a request's sync work is all in one thread already.
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        created = self.create_request(scope, body_file)
        # A request Django could not make (an undecodable path, say) gets its error answer.
        response = created[1] if created[0] is None else await self._static_or_respond(created[0])
        try:
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
            await self.send_response(response, send)
        finally:
            # respond() closes what it can before the response is sent; the rest is closed here.
            if not response.closed:
                await _in_pool(response.close)()
            body_file.close()

    async def _static_or_respond(self, request: ASGIRequest) -> HttpResponseBase:
        try:
            return await self.static_files(request)
        except MissingFileError as error:
            # With DEBUG on, ServeStatic names the directories it looked in for a static URL
            # that is no file; in production such a URL reaches the views, and their 404.
            return HttpResponseNotFound(str(error), content_type="text/plain; charset=utf-8")

    def respond(self, request: ASGIRequest) -> HttpResponseBase:
        """The request through the (sync) middleware chain and its view, in a pool thread."""
        signals.request_started.send(sender=self.__class__, scope=request.scope)
        response = self.get_response(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if response.streaming:
            # Sent, then closed, later and maybe in another thread (config.handler's
            # send_response iterates its body there): this thread's connection goes back now.
            close_old_connections()
        else:
            # Its body is complete: closing it now (request_finished) returns this thread's
            # database connection before the bytes go out, in the thread that held it.
            response.close()
        return response
