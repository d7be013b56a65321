"""Helpers of the serving tests."""

from __future__ import annotations

import io
import socket
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def make_settings(bundle_dir: Path, state_dir: Path, api_key: str, **overrides):  # type: ignore[no-untyped-def]
    from faceops.serving.config import ServingSettings
    from faceops.serving.security import hash_key

    return ServingSettings(
        bundle_dir=bundle_dir, state_dir=state_dir, api_key_hashes=[f"tests:{hash_key(api_key)}"], **overrides
    )


def bmp_header_only(width: int, height: int) -> bytes:
    """A 54-byte BMP whose header claims ``width`` x ``height`` 24-bit pixels (a bomb if decoded)."""
    row = (width * 3 + 3) // 4 * 4
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + row * height, 0, 0, 54) + info


def png_16bit(path: Path) -> bytes:
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.uint16) * 257
    out = io.BytesIO()
    Image.fromarray(grey).save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.3):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what``."""
    import time

    deadline = time.time() + timeout
    while not (value := predicate()):
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return value


class Hammer:
    """Sends one request after another from a thread until stopped; ``seen`` collects ``record(response)``."""

    def __init__(self, send, record) -> None:  # type: ignore[no-untyped-def]
        import threading

        self.send, self.record, self.seen = send, record, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.seen.append(self.record(self.send()))

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def at_least(self, n: int, timeout: float = 120) -> None:
        wait_until(lambda: len(self.seen) >= n, timeout, f"{n} requests", interval=0.1)


class LiveServer:
    """The app under a real uvicorn server on 127.0.0.1 (in a thread), for browsers and benchmarks."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )

    def __enter__(self) -> LiveServer:
        import threading

        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_until(lambda: self._server.started, 180, "uvicorn to start", interval=0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
