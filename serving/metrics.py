"""Prometheus metrics of one app instance (its own registry: no global state, tests can build many apps)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Requests, latency, faces, recognition decisions and the served model version."""

    def __init__(self, unknown_window: int = 500) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "faceops_requests", "HTTP requests by endpoint and status.", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "faceops_request_latency_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "faceops_stage_seconds",
            "Time per request stage: decode, detect, embed (alignment included), search, log.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.faces = Counter("faceops_faces", "Faces detected, by endpoint.", ["endpoint"], registry=r)
        self.decisions = Counter(
            "faceops_recognitions",
            "Recognised faces by decision (known / unknown).",
            ["decision"],
            registry=r,
        )
        self.unknown_rate = Gauge(
            "faceops_unknown_rate", "Share of 'unknown' among the last recognised faces.", registry=r
        )
        self.model_info = Gauge(
            "faceops_model_info", "The served model (value 1).", ["version", "model_id"], registry=r
        )
        self.threshold = Gauge(
            "faceops_model_threshold", "Decision threshold of the served model.", registry=r
        )
        self.swaps = Counter("faceops_model_swaps", "Times a new model version was swapped in.", registry=r)
        self.source_up = Gauge(
            "faceops_model_source_up", "1 if the model source (MLflow) answered last time.", registry=r
        )
        self.gallery_size = Gauge("faceops_gallery_identities", "Enrolled identities.", registry=r)
        self.state_repairs = Gauge(
            "faceops_state_repairs",
            "Damaged state files moved aside since the start, by kind (gallery, request_log): alert when > 0.",
            ["kind"],
            registry=r,
        )
        self.database_up = Gauge(
            "faceops_database_up", "1 if the gallery's store (PostgreSQL, or the files) answered last time.", registry=r
        )
        self.rebuild_progress = Gauge(
            "faceops_gallery_rebuild_progress",
            "Share of the stored photos embedded by the model whose gallery is being built (1: none is built).",
            registry=r,
        )
        self.rebuild_remaining = Gauge(
            "faceops_gallery_rebuild_photos_remaining", "Photos the gallery being built still has to embed.", registry=r
        )
        self._recent: deque[bool] = deque(maxlen=unknown_window)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_decisions(self, unknown: list[bool]) -> None:
        for is_unknown in unknown:
            self.decisions.labels("unknown" if is_unknown else "known").inc()
            self._recent.append(is_unknown)
        if self._recent:
            self.unknown_rate.set(sum(self._recent) / len(self._recent))

    def set_model(self, version: str, model_id: str, threshold: float) -> None:
        self.model_info.clear()
        self.model_info.labels(version, model_id).set(1)
        self.threshold.set(threshold)

    def watch_repairs(self, files: Callable[[], list[str]]) -> None:
        """Count the damaged state files that ``files()`` names, by kind, at each scrape."""

        def counter(gallery: bool) -> Callable[[], float]:
            return lambda: float(sum(1 for f in files() if gallery == f.endswith(".npz")))

        self.state_repairs.labels("gallery").set_function(counter(True))
        self.state_repairs.labels("request_log").set_function(counter(False))

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve these metrics (only them, no key) on ``host:port`` in a thread; returns the function that stops
        it. For Prometheus inside the cluster: the API port keeps its key."""
        server, thread = start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

        return stop

    def render(self) -> bytes:
        return generate_latest(self.registry)
