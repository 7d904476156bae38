"""Prometheus metrics: requests and latencies (ASGI middleware), jobs by state and queue depth (at scrape)."""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.records import JobStore

# kombu's Redis transport keeps one list per priority step: "<queue>", "<queue>\x06\x163", ...
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
disable_created_metrics()


class Metrics:
    """One registry per app, so tests can build several apps in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "unilabel_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "unilabel_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.jobs = Gauge("unilabel_jobs", "Jobs by state", ["state"], registry=self.registry)
        self.queue = Gauge(
            "unilabel_queue_depth", "Messages waiting per queue", ["queue"], registry=self.registry
        )
        self.predictions = Counter(
            "unilabel_predicted_utterances_total", "Utterances predicted", ["cache"], registry=self.registry
        )

    def render(self, jobs: JobStore, queues: list[str]) -> bytes:
        for state, n in jobs.counts_by_state().items():
            self.jobs.labels(state=state).set(n)
        pipe = jobs.r.pipeline(transaction=False)
        for q in queues:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(q + suffix)
        lengths = pipe.execute()
        for k, q in enumerate(queues):
            step = len(PRIORITY_SUFFIXES)
            self.queue.labels(queue=q).set(sum(lengths[k * step : (k + 1) * step]))
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead); the route label is the path template, not the raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._series: dict[tuple[str, str, int], tuple] = {}  # labelled children, looked up once

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or scope.get("unilabel.route") or "unmatched"
            key = (scope.get("method", ""), path, status["code"])
            series = self._series.get(key)
            if series is None:
                m = self.metrics
                series = self._series[key] = (
                    m.requests.labels(key[0], path, str(key[2])),
                    m.latency.labels(key[0], path),
                )
            series[0].inc()
            series[1].observe(time.perf_counter() - start)
