"""Alert sinks: the log, a webhook (JSON POST) and a file (JSON lines); pluggable through :class:`AlertSink`.

An alert is a JSON object (``source``, ``severity``, ``summary``, ``action``, ``reasons``, ``figures``,
``window``, ``model_version``, ``report``, ``ts``). :func:`send_all` delivers it to every sink and reports per
sink whether that worked: a dead webhook is recorded in the decision, it never stops the run or the others.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Protocol

from faceops.monitoring.config import FileSinkConfig, LogSinkConfig, SinkConfig, WebhookSinkConfig

from faceops.errors import MonitoringError

__all__ = ["AlertSink", "FileSink", "LogSink", "WebhookSink", "make_sinks", "send_all"]

log = logging.getLogger("faceops.monitoring.alerts")


class AlertSink(Protocol):
    """Anything that delivers an alert; raises :class:`MonitoringError` when it cannot."""

    name: str

    def send(self, alert: dict[str, Any]) -> None: ...


class LogSink:
    """Writes the alert's summary and reasons to the ``faceops.monitoring.alerts`` logger."""

    def __init__(self, level: str = "WARNING") -> None:
        self.name, self.level = "log", getattr(logging, level)

    def send(self, alert: dict[str, Any]) -> None:
        log.log(
            self.level,
            "[%s] %s | %s",
            alert.get("severity"),
            alert.get("summary"),
            "; ".join(alert.get("reasons", [])),
        )


class FileSink:
    """Appends the alert as one JSON line (the file and its folder are created)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def send(self, alert: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as handle:
                handle.write(json.dumps(alert, default=str) + "\n")
        except OSError as exc:
            raise MonitoringError(f"cannot write the alert to {self.path}: {exc}") from exc


class WebhookSink:
    """POSTs the alert as JSON; retries connection errors and 5xx answers, then fails clearly."""

    def __init__(
        self, url: str, timeout_s: float = 5.0, retries: int = 2, headers: dict[str, str] | None = None
    ):
        self.url, self.timeout_s, self.retries, self.headers = url, timeout_s, retries, dict(headers or {})
        self.name = f"webhook:{url}"

    def send(self, alert: dict[str, Any]) -> None:
        import requests

        body = json.dumps(alert, default=str)
        headers = {"Content-Type": "application/json", **self.headers}
        problem = ""
        for attempt in range(self.retries + 1):
            try:
                response = requests.post(self.url, data=body, headers=headers, timeout=self.timeout_s)
            except requests.RequestException as exc:
                problem = f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                if response.status_code < 400:
                    return
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code < 500:
                    break  # the receiver refused this alert: sending it again will not help
            if attempt < self.retries:
                time.sleep(min(2.0**attempt * 0.5, 5.0))
        raise MonitoringError(f"webhook {self.url} did not take the alert: {problem}")


def make_sinks(configs: list[SinkConfig]) -> list[AlertSink]:
    """The sinks a config lists."""
    sinks: list[AlertSink] = []
    for config in configs:
        if isinstance(config, LogSinkConfig):
            sinks.append(LogSink(config.level))
        elif isinstance(config, WebhookSinkConfig):
            sinks.append(WebhookSink(config.url, config.timeout_s, config.retries, config.headers))
        elif isinstance(config, FileSinkConfig):
            sinks.append(FileSink(config.path))
    return sinks


def send_all(sinks: list[AlertSink], alert: dict[str, Any]) -> list[dict[str, Any]]:
    """Deliver to every sink; returns ``{sink, ok, error}`` per sink (failures are logged, never raised)."""
    results = []
    for sink in sinks:
        try:
            sink.send(alert)
            results.append({"sink": sink.name, "ok": True, "error": None})
        except (MonitoringError, OSError) as exc:
            log.error("alert sink %s failed: %s", sink.name, exc)
            results.append({"sink": sink.name, "ok": False, "error": str(exc)})
    return results
