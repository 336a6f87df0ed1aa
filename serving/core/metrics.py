"""Prometheus metrics of the scoring API, in a registry of the app (not the global one).

``fraud_api_requests_total{method,route,status}`` and
``fraud_api_request_duration_seconds{method,route}`` (histogram) are recorded by
:class:`MetricsMiddleware` for every request, labelled with the route's template (``/v1/score``)
or ``unmatched``, so a scan of random paths cannot grow the label set. The scoring routes add
``fraud_api_scores{model_version}`` (histogram of fraud scores) and
``fraud_api_decisions_total{model_version,decision}``. The model is described by
``fraud_api_model_info{version,metaflow_run,dagster_run_id} 1`` (one series: the model serving
now), ``fraud_api_model_loaded_timestamp_seconds``, ``fraud_api_ready`` and
``fraud_api_model_reloads_total{result}`` (``swapped`` or ``refused``), and
``fraud_api_score_pass_claims`` (histogram: claims scored together per pass of the event loop).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fraud_core.schema import Decision

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SCORE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
UNMATCHED = "unmatched"


@dataclass
class _ScoreSeries:
    """One model version's scores: those not yet counted, and the counts so far."""

    pending: list[float]
    buckets: np.ndarray  # scores per bucket (not cumulative), +Inf last
    total: float = 0.0
    investigated: int = 0


class ScoreDistribution:
    """``fraud_api_scores{model_version}`` (histogram) and
    ``fraud_api_decisions_total{model_version,decision}``, as one collector.

    A scored claim is appended to a list (a prometheus_client histogram and counter per claim
    cost the /v1/score path several times more); the buckets are counted with numpy when
    Prometheus scrapes, or every :attr:`FOLD_EVERY` claims, so memory stays bounded
    without scrapes. Safe across threads (batches are scored off the event loop).
    """

    FOLD_EVERY = 4096

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.edges = np.asarray(buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._series: dict[str, _ScoreSeries] = {}

    def _get(self, version: str) -> _ScoreSeries:
        series = self._series.get(version)
        if series is None:
            series = _ScoreSeries([], np.zeros(len(self.edges) + 1, dtype=np.int64))
            self._series[version] = series
        return series

    def _fold(self, series: _ScoreSeries, scores: np.ndarray) -> None:
        """Count ``scores`` into the buckets (a bucket counts the scores <= its bound)."""
        where = np.searchsorted(self.edges, scores, side="left")
        series.buckets += np.bincount(where, minlength=len(self.edges) + 1)
        series.total += float(scores.sum())

    def _fold_pending(self, series: _ScoreSeries) -> None:
        if series.pending:
            self._fold(series, np.asarray(series.pending))
            series.pending.clear()

    def observe(self, version: str, score: float, investigate: bool) -> None:
        """Record one claim's score and decision."""
        with self._lock:
            series = self._get(version)
            series.pending.append(score)
            if investigate:
                series.investigated += 1
            if len(series.pending) >= self.FOLD_EVERY:
                self._fold_pending(series)

    def observe_many(self, version: str, scores: np.ndarray, investigate: np.ndarray) -> None:
        """Record the scores and decisions of a batch."""
        with self._lock:
            series = self._get(version)
            self._fold(series, np.asarray(scores, dtype=np.float64))
            series.investigated += int(np.count_nonzero(investigate))

    def collect(self) -> Iterator[Metric]:
        """The two families, every pending score counted."""
        scores = HistogramMetricFamily(
            "fraud_api_scores",
            "Fraud scores returned (calibrated probabilities), by model version.",
            labels=["model_version"],
        )
        decisions = CounterMetricFamily(
            "fraud_api_decisions",
            "Claims scored, by model version and decision.",
            labels=["model_version", "decision"],
        )
        bounds = [*(repr(float(e)) for e in self.edges), "+Inf"]
        with self._lock:
            for version, series in self._series.items():
                self._fold_pending(series)
                cumulative = np.cumsum(series.buckets).tolist()
                scores.add_metric(
                    [version], list(zip(bounds, cumulative, strict=True)), sum_value=series.total
                )
                decisions.add_metric([version, Decision.INVESTIGATE], series.investigated)
                decisions.add_metric(
                    [version, Decision.FAST_TRACK], cumulative[-1] - series.investigated
                )
        yield scores
        yield decisions

    def describe(self) -> Iterator[Metric]:
        """Nothing: the registry must not collect at registration (``auto_describe``)."""
        return iter(())


class Metrics:
    """The app's collectors, with label children cached (a label lookup per request is slow)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            "fraud_api_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "fraud_api_request_duration_seconds",
            "Time from the request reaching the app to the end of its response.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = ScoreDistribution(SCORE_BUCKETS)
        self.registry.register(self.scores)
        self.claims_per_pass = Histogram(
            "fraud_api_score_pass_claims",
            "Single claims (POST /v1/score) scored together per pass of the event loop "
            "(serving/core/batching.py).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "fraud_api_model_info",
            "1 for the model serving now (its version and lineage as labels).",
            ["version", "metaflow_run", "dagster_run_id"],
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "fraud_api_model_loaded_timestamp_seconds",
            "Unix time the serving model was loaded.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "fraud_api_ready", "1 when a model is loaded and scoring.", registry=self.registry
        )
        self.reloads = Counter(
            "fraud_api_model_reloads",
            "Champion changes handled: swapped in, or refused (the old model kept serving).",
            ["result"],
            registry=self.registry,
        )
        self.reloads.labels("swapped")
        self.reloads.labels("refused")
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._info_labels: tuple[str, str, str] | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_score(self, version: str, score: float, investigate: bool) -> None:
        """Record one claim's score and decision."""
        self.scores.observe(version, score, investigate)

    def observe_scores(self, version: str, scores: np.ndarray, investigate: np.ndarray) -> None:
        """Record the scores and decisions of a batch."""
        self.scores.observe_many(version, scores, investigate)

    def model_changed(self, version: str, metaflow_run: str, dagster_run_id: str) -> None:
        """Point the info gauge at the new model (one series) and stamp the load time."""
        if self._info_labels is not None:
            self.model_info.remove(*self._info_labels)
        self._info_labels = (version, metaflow_run, dagster_run_id)
        self.model_info.labels(*self._info_labels).set(1)
        self.model_loaded.set(time.time())
        self.ready.set(1)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request (a few microseconds per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: frozenset[str] = frozenset()):
        self.app = app
        self.metrics = metrics
        # Paths answered before routing (a 413 from the body limit) keep their route label.
        self.known_paths = known_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                scope["path"] if scope["path"] in self.known_paths else UNMATCHED
            )
            self.metrics.observe_request(
                scope["method"], template, status, time.perf_counter() - started
            )
