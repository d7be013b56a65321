"""Alert sinks: a real HTTP receiver on 127.0.0.1 takes the webhook JSON POST; failures are per sink."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from faceops.monitoring.alerts import FileSink, LogSink, WebhookSink, make_sinks, send_all
from faceops.monitoring.config import FileSinkConfig, LogSinkConfig, WebhookSinkConfig

from faceops.errors import MonitoringError

ALERT = {
    "source": "faceops-monitor",
    "severity": "critical",
    "action": "retrain",
    "summary": "drift",
    "reasons": ["drift: 3 of 8 features drifted"],
    "figures": {"share": 0.375},
    "ts": 1.0,
}


class Receiver:
    """A real HTTP server that records POSTed bodies and answers with the next status of ``statuses``."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                receiver.headers.append(dict(self.headers))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status < 400 else b"broken")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/faceops"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_posts_the_alert_as_json():
    with Receiver() as receiver:
        WebhookSink(receiver.url, headers={"Authorization": "Bearer t0ken"}).send(ALERT)
    assert receiver.bodies == [ALERT]
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert receiver.headers[0]["Authorization"] == "Bearer t0ken"


def test_webhook_retries_server_errors_then_succeeds():
    with Receiver([503, 500]) as receiver:
        WebhookSink(receiver.url, retries=2).send(ALERT)
    assert len(receiver.bodies) == 3


def test_webhook_gives_up_with_a_clear_error():
    with Receiver([400]) as receiver, pytest.raises(MonitoringError, match="HTTP 400"):
        WebhookSink(receiver.url, retries=2).send(ALERT)
    assert len(receiver.bodies) == 1  # a refusal is not retried
    with Receiver() as receiver:
        dead = receiver.url
    with pytest.raises(MonitoringError, match="did not take the alert: ConnectionError"):
        WebhookSink(dead, timeout_s=1, retries=0).send(ALERT)


def test_send_all_reaches_the_working_sinks_when_one_fails(tmp_path, caplog):
    with Receiver() as receiver:
        dead = receiver.url
    sinks = make_sinks(
        [
            LogSinkConfig(),
            WebhookSinkConfig(url=dead, retries=0, timeout_s=1),
            FileSinkConfig(path=tmp_path / "out" / "alerts.jsonl"),
        ]
    )
    assert [type(s) for s in sinks] == [LogSink, WebhookSink, FileSink]
    with caplog.at_level("WARNING", logger="faceops.monitoring.alerts"):
        results = send_all(sinks, ALERT)
    assert [r["ok"] for r in results] == [True, False, True]
    assert "did not take the alert" in results[1]["error"]
    assert json.loads((tmp_path / "out" / "alerts.jsonl").read_text()) == ALERT
    assert "drift: 3 of 8 features drifted" in caplog.text


def test_file_sink_reports_an_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MonitoringError, match="cannot write the alert"):
        FileSink(blocker / "alerts.jsonl").send(ALERT)
