"""Service metrics in the Prometheus text format (``GET /metrics``), with prometheus_client.

Each app has its own :class:`~prometheus_client.CollectorRegistry`, so two services in one
process (tests, the demo's simulated reviewers) never share or clash over a series.

- ``aios_http_requests_total{method, endpoint, status}`` and
  ``aios_http_request_duration_seconds{method, endpoint}``: every request, by the route's
  path template (``/api/tasks/{case_id}/claim``), ``unmatched`` for paths no route serves;
- ``aios_online_decisions_total{action, decision_source}``: online decisions made;
- ``aios_policy_evaluations_total{action}``: what-if evaluations of the policy;
- ``aios_model_in_use{model_version, decision_source}`` (1 for what scores now),
  ``aios_model_version`` (the champion version in use, 0 while the fallback rules answer) and
  ``aios_champion_swaps_total``: read from the champion holder at scrape time;
- ``aios_review_open_tasks{queue}`` and ``aios_review_overdue_tasks{queue}``: undecided
  review cases per expert queue, read from the review store at scrape time.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds: an online decision takes milliseconds; a page a little more.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"


class _ReviewStoreCollector(Collector):
    def __init__(self, store: Any, clock: Callable[[], datetime]):
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        open_tasks = GaugeMetricFamily("aios_review_open_tasks", "Undecided review cases per expert queue.",
                                       labels=["queue"])
        overdue = GaugeMetricFamily("aios_review_overdue_tasks", "Undecided review cases past their due time, "
                                    "per expert queue.", labels=["queue"])
        for queue, (total, late) in sorted(self.store.queue_counts(self.clock()).items()):
            open_tasks.add_metric([queue], total)
            overdue.add_metric([queue], late)
        yield open_tasks
        yield overdue


class _ChampionCollector(Collector):
    def __init__(self, holder: Callable[[], Any]):
        self.holder = holder

    def collect(self) -> Iterator[Any]:
        holder = self.holder()
        snapshot = holder.snapshot if holder is not None else None
        in_use = GaugeMetricFamily("aios_model_in_use", "1 for the model (or the fallback rules) online decisions "
                                   "use now.", labels=["model_version", "decision_source"])
        version = GaugeMetricFamily("aios_model_version", "Champion version online decisions use now; 0 while the "
                                    "fallback rules answer.")
        swaps = CounterMetricFamily("aios_champion_swaps", "Times the online service swapped its champion "
                                    "(promotion, rollback, model lost or back).")
        if snapshot is not None:
            in_use.add_metric([snapshot.model_version or "none", snapshot.decision_source], 1)
            version.add_metric([], float(snapshot.model_version) if snapshot.model_version else 0.0)
            swaps.add_metric([], holder.swaps)
        yield in_use
        yield version
        yield swaps


class ServiceMetrics:
    """The service's metrics and their registry."""

    def __init__(self, store: Any, *, clock: Callable[[], datetime], champion: Callable[[], Any] | None = None):
        self.registry = CollectorRegistry()
        self.requests = Counter("aios_http_requests", "HTTP requests by endpoint and status.",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("aios_http_request_duration_seconds", "Time to answer an HTTP request.",
                                 ["method", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.decisions = Counter("aios_online_decisions", "Online decisions by action and decision source.",
                                 ["action", "decision_source"], registry=self.registry)
        self.evaluations = Counter("aios_policy_evaluations", "What-if evaluations of the decision policy.",
                                   ["action"], registry=self.registry)
        self.registry.register(_ReviewStoreCollector(store, clock))
        self.registry.register(_ChampionCollector(champion or (lambda: None)))

    def observe(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method, endpoint, str(status)).inc()
        self.latency.labels(method, endpoint).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: counts and times every HTTP request by its route's path template."""

    def __init__(self, app: Any, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}
        began = time.perf_counter()

        async def send_and_record(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe(scope.get("method", "GET"), endpoint, status["code"], time.perf_counter() - began)
