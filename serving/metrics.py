"""Prometheus metrics of one app instance (its own registry: no global state, tests can build many apps)."""

from __future__ import annotations

from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
