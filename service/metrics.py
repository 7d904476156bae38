"""Prometheus metrics: requests and latencies (ASGI middleware), jobs by state and queue depth (at scrape).

With several API processes (``API_WORKERS`` > 1, service/serve.py) prometheus-client's multiprocess mode is
on (``PROMETHEUS_MULTIPROC_DIR``): every process writes its counters and histograms to its own files there,
and a scrape, whichever process answers it, sums all of them, the files of processes that died included. Jobs
by state and queue depth are read from Redis at scrape time, so they are the same from every process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.lifecycle import JobStore

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
        self.predictions = Counter(
            "unilabel_predicted_utterances_total", "Utterances predicted", ["cache"], registry=self.registry
        )
        self.forward_utterances = Histogram(
            "unilabel_predict_forward_utterances",
            "Utterances per model forward pass: the cache misses of the requests micro-batched together",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
            registry=self.registry,
        )
        self._pool: Callable[[], dict[str, int]] | None = None

    def watch_pool(self, sizes: Callable[[], dict[str, int]]) -> None:
        """Report the model pool's sizes ({"loaded", "loading"}) of the process that answers a scrape."""
        self._pool = sizes

    def render(self, jobs: JobStore, queues: list[str]) -> bytes:
        """The exposition text: this process's metrics, or every API process's in multiprocess mode, then the
        job and queue gauges read from Redis now (raises RedisError when Redis is unreachable)."""
        state = CollectorRegistry()
        families = _state_families(jobs, queues)
        if self._pool is not None:
            pool = GaugeMetricFamily(
                "unilabel_model_pool", "Models of the answering API process, by state", labels=["state"]
            )
            for name, n in self._pool().items():
                pool.add_metric([name], n)
            families.append(pool)
        state.register(_Snapshot(families))
        counted = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every API process's files, summed
            counted = CollectorRegistry()
            MultiProcessCollector(counted)
        return generate_latest(counted) + generate_latest(state)


def _state_families(jobs: JobStore, queues: list[str]) -> list[Metric]:
    by_state = GaugeMetricFamily("unilabel_jobs", "Jobs by state", labels=["state"])
    for state, n in jobs.counts_by_state().items():
        by_state.add_metric([state], n)
    pipe = jobs.r.pipeline(transaction=False)
    for q in queues:
        for suffix in PRIORITY_SUFFIXES:
            pipe.llen(q + suffix)
    lengths = pipe.execute()
    depth = GaugeMetricFamily("unilabel_queue_depth", "Messages waiting per queue", labels=["queue"])
    step = len(PRIORITY_SUFFIXES)
    for k, q in enumerate(queues):
        depth.add_metric([q], sum(lengths[k * step : (k + 1) * step]))
    return [by_state, depth]


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _answered(route: object, endpoint: object) -> bool:
    return endpoint is getattr(route, "endpoint", None) or endpoint is getattr(route, "app", None)


def _route_path(scope: Scope) -> str:
    """The path template of the route that answered: FastAPI's routes put themselves in the scope; plain
    Starlette routes (/openapi.json) only their endpoint, and mounts (the static files under /static/) their
    app, found again among the app's routes. ``unmatched`` when no route matched (404), so raw paths never
    become labels."""
    route = scope.get("route")
    if route is None and "endpoint" in scope:
        routes = getattr(scope.get("app"), "routes", ())
        route = next((r for r in routes if _answered(r, scope["endpoint"])), None)
    return getattr(route, "path", None) or scope.get("unilabel.route") or "unmatched"


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
            path = _route_path(scope)
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
