"""HTTP to the providers' APIs, for replies, media and Telegram's getUpdates.

A supervisor may point a channel at another API base URL (a proxy, a test server), so
every host is vetted like a mail server is (channels_app.hosts) and the connection goes to
the vetted address, with the name kept for TLS: a DNS answer that changes in between
cannot redirect it into the internal network. Redirects are followed only when asked,
each hop vetted again, and credentials never follow a redirect to another origin.

Errors never carry the URL: Telegram's URLs hold the bot token.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from channels_app.common import hosts
from channels_app.common.retry import DeliveryError

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
DEFAULT_MAX_BYTES = 1024 * 1024


class ProviderError(DeliveryError):
    """The provider could not be reached or refused. `transient`: worth trying again."""


class TooLarge(ProviderError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than the {limit:,}-byte limit", transient=False)


@dataclass(frozen=True)
class Response:
    status: int
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            raise ProviderError(
                f"unreadable answer (HTTP {self.status})", transient=self.status >= 500
            ) from None


@dataclass(frozen=True)
class _Body:
    json: Any
    form: dict[str, str] | None
    content: bytes | None


_local = threading.local()


def _client() -> httpx.Client:
    # One pool per thread, created lazily: never shared across a worker's fork.
    client: httpx.Client | None = getattr(_local, "client", None)
    if client is None:
        # trust_env off: a proxy from the environment would bypass the address vetting.
        client = httpx.Client(follow_redirects=False, trust_env=False, timeout=DEFAULT_TIMEOUT)
        _local.client = client
    return client


def _vetted(url: httpx.URL) -> list[hosts.IPAddress]:
    if url.scheme not in {"http", "https"} or not url.host:
        raise ProviderError("the provider URL is not http(s)", transient=False)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = hosts.resolve(url.host, port)
    except hosts.HostNotAllowed as exc:
        raise ProviderError(str(exc), transient=False) from None
    if url.scheme == "http" and not hosts.all_loopback(addresses):
        raise ProviderError("plain http is allowed to loopback only", transient=False)
    return addresses


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    content: bytes | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    redirects: int = 0,
) -> Response:
    """One request to a vetted address. Raises ProviderError; any HTTP status is returned.
    `content` is sent as given: for a body signed byte for byte."""
    target = httpx.URL(url)
    headers = dict(headers or {})
    for _ in range(redirects + 1):
        body = _Body(json_body, form, content)
        response = _send(method, target, headers, params, body, auth, timeout, max_bytes)
        location = response.headers.get("location")
        if response.status not in {301, 302, 303, 307, 308} or not location:
            return response
        following = target.join(location)
        if (following.scheme, following.host, following.port) != (target.scheme, target.host, target.port):
            auth = None
            headers.pop("Authorization", None)
        if response.status == 303 or (method == "POST" and response.status in {301, 302}):
            method, json_body, form, content = "GET", None, None, None
        target, params = following, None
    raise ProviderError("too many redirects", transient=False)


def _send(
    method: str,
    url: httpx.URL,
    headers: dict[str, str],
    params: dict[str, str] | None,
    body: _Body,
    auth: tuple[str, str] | None,
    timeout: float | None,
    max_bytes: int,
) -> Response:
    addresses = _vetted(url)
    host_header = url.host if url.port is None else f"{url.host}:{url.port}"
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    error: Exception | None = None
    for address in addresses:
        pinned = url.copy_with(host=str(address))
        try:
            with _client().stream(
                method,
                pinned,
                headers={**headers, "Host": host_header},
                params=params,
                json=body.json,
                data=body.form,
                content=body.content,
                auth=auth,
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
                extensions=extensions,
            ) as response:
                return Response(response.status_code, response.headers, _read(response, max_bytes))
        except httpx.ConnectError as exc:
            error = exc  # the next address may answer
        except httpx.TimeoutException:
            raise ProviderError("the provider did not answer in time", transient=True) from None
        except httpx.HTTPError as exc:
            raise ProviderError(f"the connection failed ({type(exc).__name__})", transient=True) from None
    raise ProviderError(f"could not connect ({type(error).__name__})", transient=True)


def _read(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(max_bytes)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def status_transient(status: int) -> bool:
    """Throttled or a server error: the same request may well succeed later."""
    return status == 429 or status >= 500


def retry_after(response: Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None
