"""Prometheus metrics (prometheus-client), shared by every worker process of a server.

With several workers, `experiments serve` points `PROMETHEUS_MULTIPROC_DIR` at an empty
directory before any worker starts; each process then keeps its values in a memory-mapped file
there and a scrape of `/metrics`, whichever worker answers it, adds them all up. Without it (one
process, or the app driven in-process by tests) the default registry is used.

Label values are bounded: routes are templates (`/api/projects/{project_id}/experiments/`), never
paths, and requests that match no route share `unmatched`.
"""

import functools
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "experiments_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "experiments_http_request_duration_seconds",
    "Time from receiving a request to the end of its response.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FLAG_EVALUATIONS = Counter(
    "experiments_flag_evaluations_total", "Flag values computed by /flags and /decide."
)
FLAG_EVALUATION_ERRORS = Counter(
    "experiments_flag_evaluation_errors_total", "/flags and /decide requests whose evaluation failed."
)
FLAG_CACHE_LOOKUPS = Counter(
    "experiments_flag_cache_lookups_total", "Flag-definition cache lookups, by result (hit, miss).", ["result"]
)
FLAG_CACHE_INVALIDATIONS = Counter(
    "experiments_flag_cache_invalidations_total", "Project entries evicted from the flag-definition cache."
)
EVENTS_ACCEPTED = Counter("experiments_events_accepted_total", "Captured events that passed validation.")
EVENTS_STORED = Counter("experiments_events_stored_total", "Accepted events that were new (not re-deliveries).")
EVENTS_DROPPED = Counter("experiments_events_dropped_total", "Captured events dropped, by reason.", ["reason"])
RESULTS_SECONDS = Histogram(
    "experiments_results_computation_seconds",
    "Time to compute experiment results, by kind (live: the results endpoint; timeseries_day: one worker day).",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
FLAG_CACHE_HITS = FLAG_CACHE_LOOKUPS.labels("hit")
FLAG_CACHE_MISSES = FLAG_CACHE_LOOKUPS.labels("miss")

_request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request (label children are looked up once per combination)."""
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        labels = (method, route, str(status))
        series = _request_series[key] = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
    series[0].inc()
    series[1].observe(seconds)


# (name, help, label name, {label value: value}) of a gauge read at scrape time.
Gauge = tuple[str, str, str, dict[str, float]]
P = ParamSpec("P")
R = TypeVar("R")


def timed_results(kind: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a coroutine function so each call lands in `experiments_results_computation_seconds`."""
    child = RESULTS_SECONDS.labels(kind)

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                child.observe(time.perf_counter() - started)

        return wrapper

    return decorate


class _Gauges(Collector):
    """Values read at scrape time (e.g. jobs by state from the job table), as gauges."""

    def __init__(self, gauges: Iterable[Gauge]):
        self.gauges = list(gauges)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        for name, documentation, label, values in self.gauges:
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for label_value, value in values.items():
                family.add_metric([label_value], value)
            yield family


class _ThisProcess(Collector):
    def collect(self):
        return REGISTRY.collect()


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render(gauges: Iterable[Gauge] = ()) -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (or this process's) plus `gauges`."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_Gauges(gauges))
    return generate_latest(registry), CONTENT_TYPE_LATEST
