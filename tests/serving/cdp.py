"""A minimal Chrome DevTools Protocol driver for headless Chromium (Debian's ``chromium`` package)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from tests.serving.serving_helpers import free_port, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Browser:
    """One headless Chromium with one page, driven over its DevTools WebSocket."""

    def __init__(self, profile: Path, extra_flags: list[str] | None = None) -> None:
        import websocket  # websocket-client

        port = free_port()
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                *(extra_flags or []),
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def page_ws() -> str | None:
            try:
                pages = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            except (requests.RequestException, ValueError):
                return None
            return next((p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page"), None)

        self.ws = websocket.create_connection(
            wait_until(page_ws, 60, "chromium's DevTools endpoint"), timeout=120
        )
        self._id = 0

    def send(self, method: str, **params: Any) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        time.sleep(0.2)
        wait_until(lambda: self.eval("document.readyState") == "complete", 60, f"{url} to load")

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
