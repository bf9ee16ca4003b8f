"""Metrics for operators, in Prometheus' text format at /metrics.

Not public: the endpoint answers only a bearer token equal to METRICS_TOKEN (compared in
constant time); without a token configured, or with a wrong one, it is a 404 like any
unknown URL. Each process exposes its own figures (one scrape target per process); the
queue lengths are read from Redis at scrape time, so any process reports them.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from config.redis import redis_client

REQUEST_SECONDS = Histogram(
    "portcullis_http_request_seconds",
    "HTTP request time in this process, by method and status class",
    ["method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LIVE_EVENTS = Counter(
    "portcullis_live_events_sent_total", "Live events handed to the channel layer, by type", ["type"]
)
LIVE_EVENTS_FAILED = Counter(
    "portcullis_live_events_failed_total", "Live events the channel layer refused (pages catch up)"
)
LIVE_SEND_LAG = Histogram(
    "portcullis_live_event_send_lag_seconds",
    "From the commit to the channel layer taking the event (this process's sender)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
)
LIVE_SENDER_QUEUE = Gauge(
    "portcullis_live_sender_queue_depth", "Events waiting in this process's sender for the channel layer"
)
LIVECHAT_STORES_IN_FLIGHT = Gauge(
    "portcullis_livechat_stores_in_flight", "Visitors' messages this process is storing now"
)
LIVECHAT_MESSAGES = Counter(
    "portcullis_livechat_messages_stored_total", "Visitors' messages stored by this process"
)
LIVECHAT_BUSY = Counter(
    "portcullis_livechat_busy_total", "Visitors' messages answered busy (the widget sends them again)"
)

# Celery's queues are Redis lists of these names (the default queue and any routed ones).
CELERY_QUEUES = ("celery",)


class QueueLengths(Collector):
    """Task queue lengths, read from the broker when scraped."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "portcullis_celery_queue_length", "Tasks waiting in the broker, by queue", labels=["queue"]
        )
        if settings.REDIS_URL:
            pipe = redis_client().pipeline(transaction=False)
            for queue in CELERY_QUEUES:
                pipe.llen(queue)
            for queue, length in zip(CELERY_QUEUES, pipe.execute(), strict=True):
                family.add_metric([queue], float(length))
        yield family


REGISTRY.register(QueueLengths())


class RequestMetricsMiddleware:
    """Times every HTTP request but static files (outermost, so the gates' own time
    counts; static files are served before the middleware, config.handler)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        REQUEST_SECONDS.labels(request.method or "", f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started
        )
        return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Http404
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
