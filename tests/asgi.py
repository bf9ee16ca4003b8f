"""Requests to the ASGI application in this process (config.asgi), as uvicorn hands them
over: through the HTTP handler, every gate and the view, without a server."""

from __future__ import annotations

from asgiref.testing import ApplicationCommunicator

from config.asgi import application

HOST = [(b"host", b"testserver")]


async def asgi_get(path: str, query: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    """Status, headers (names lower-cased) and body. The last body message may carry no
    body (ASGI allows it)."""
    scope = {"type": "http", "method": "GET", "path": path, "query_string": query, "headers": HOST}
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(timeout=5)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=5)
        body += message.get("body", b"")
        if not message.get("more_body"):
            return start["status"], {name.lower(): value for name, value in start["headers"]}, body
