"""API keys, rate limiting, body-size limits, content sniffing, and what keeps keys out of logs and pages safe.

API keys are random tokens (:func:`new_api_key`); the service stores only their SHA-256 digests (a fast hash
is enough for 256-bit random secrets, unlike passwords) and compares digests in constant time. Keys arrive in
the ``X-API-Key`` header or ``Authorization: Bearer``; a WebSocket may instead send ``{"api_key": ...}`` as its
first message (browsers cannot set headers there). Never in the URL: URLs end up in access logs, so a query
string ``api_key`` is refused, and :class:`RedactKeys` scrubs it from every log line anyway.

:class:`RateLimiter` keeps a token bucket per client for requests and WebSocket frames, and another per client
address for failed key attempts (guessing); :func:`origin_allowed` checks a WebSocket's ``Origin``;
:class:`SecurityHeadersMiddleware` gives every HTML page a Content-Security-Policy and anti-framing headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException

from faceops.errors import ConfigError, UnsupportedImage

__all__ = [
    "ApiKeys",
    "BodyLimitMiddleware",
    "RateLimiter",
    "RedactKeys",
    "SecurityHeadersMiddleware",
    "hash_key",
    "install_key_redaction",
    "new_api_key",
    "origin_allowed",
    "sniff_image",
]

# Magic numbers of the formats the service accepts; the upload's name and Content-Type are ignored.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)


def sniff_image(data: bytes, name: str) -> str:
    """The image format from the first bytes, or :class:`UnsupportedImage` naming what it looks like."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for magic, offset, fmt in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return fmt
    head = data[:64].lstrip().lower()
    guess = (
        "a PDF"
        if head.startswith(b"%pdf")
        else "HTML"
        if head.startswith((b"<!doctype html", b"<html"))
        else "SVG/XML (not accepted: scripts can hide in it)"
        if head.startswith((b"<?xml", b"<svg"))
        else "JSON"
        if head.startswith((b"{", b"["))
        else "a ZIP archive"
        if head.startswith(b"pk\x03\x04")
        else "text"
        if _is_text(data[:512])
        else "unknown binary data"
    )
    raise UnsupportedImage(
        f"content is {guess}, not an image (accepted: JPEG, PNG, WebP, BMP, GIF, TIFF)", name
    )


def _is_text(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def new_api_key() -> str:
    """A fresh random API key (give it to the client; store only :func:`hash_key` of it)."""
    return "fo_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The accepted key digests, each with an optional name (``name:digest``)."""

    def __init__(self, entries: list[str], allow_anonymous: bool = False) -> None:
        self.allow_anonymous = allow_anonymous
        self._digests: dict[str, str] = {}
        for i, entry in enumerate(e.strip() for e in entries):
            if not entry or entry.startswith("#"):
                continue
            name, _, digest = entry.rpartition(":")
            digest = digest.lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ConfigError(
                    f"API key entry {i + 1} is not a SHA-256 hex digest ('name:digest' or 'digest')"
                )
            self._digests[digest] = name or f"key{i + 1}"
        if not self._digests and not allow_anonymous:
            raise ConfigError(
                "no API keys configured: set FACEOPS_SERVE_API_KEY_HASHES or FACEOPS_SERVE_API_KEYS_FILE "
                "(create one with 'faceops serve --new-key NAME'), or allow_anonymous for local development"
            )

    @classmethod
    def from_settings(cls, hashes: list[str], path: Path | None, allow_anonymous: bool) -> ApiKeys:
        entries = list(hashes)
        if path is not None:
            try:
                entries += path.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read the API keys file {path}: {exc}") from exc
        return cls(entries, allow_anonymous)

    def check(self, key: str | None) -> str | None:
        """The key's name if it is valid, else ``None`` (anonymous access gives ``'anonymous'``)."""
        if key:
            digest = hash_key(key)
            for known, name in self._digests.items():
                if hmac.compare_digest(known, digest):
                    return name
            return None
        return "anonymous" if self.allow_anonymous else None


class RateLimiter:
    """Token buckets, thread-safe: per client ``per_minute`` sustained and ``burst`` at once (requests and
    WebSocket frames alike); per client address ``failures_per_minute`` / ``failure_burst`` failed key attempts,
    past which the address gets 429 for any key until its bucket refills (so guessing is slow, and a right
    guess cannot be told from a wrong one while throttled)."""

    def __init__(self, per_minute: int, burst: int, failures_per_minute: int = 0, failure_burst: int = 1) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.failure_rate = failures_per_minute / 60.0
        self.failure_burst = float(failure_burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 if the request (or frame) may go ahead, else the seconds to wait."""
        return self._take(client, self.rate, self.burst, 1.0)

    def failure_wait(self, address: str) -> float:
        """0.0 if ``address`` may try a key now, else the seconds until it may (too many failed attempts)."""
        return self._take(f"failed:{address}", self.failure_rate, self.failure_burst, 0.0)

    def failed(self, address: str) -> None:
        """Count one failed key attempt from ``address``."""
        self._take(f"failed:{address}", self.failure_rate, self.failure_burst, 1.0)

    def _take(self, bucket: str, rate: float, burst: float, cost: float) -> float:
        if rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if len(self._buckets) > _MAX_BUCKETS:  # many addresses: forget the full (idle) buckets
                self._buckets = {
                    k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * rate < burst
                }
            tokens, last = self._buckets.get(bucket, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[bucket] = (tokens - cost, now)
                return 0.0
            self._buckets[bucket] = (tokens, now)
            return (1.0 - tokens) / rate


_MAX_BUCKETS = 100_000

# -- keys out of logs, WebSocket origins, HTML headers --------------------------------------------------------
_KEY_IN_TEXT = re.compile(r"(?i)(api[_-]?key=)[^&\s\"']+")


class RedactKeys(logging.Filter):
    """Replaces any ``api_key=<value>`` in a log record's message by ``api_key=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        if _KEY_IN_TEXT.search(message):
            record.msg, record.args = _KEY_IN_TEXT.sub(r"\1[redacted]", message), ()
        return True


def install_key_redaction() -> None:
    """Add :class:`RedactKeys` to uvicorn's loggers and to every handler of them and of the root (idempotent).

    Called when the app starts, after the server has configured logging. uvicorn writes the request line
    (with its query string) in ``uvicorn.access`` and WebSocket handshakes in ``uvicorn.error``.
    """
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    targets: list[logging.Filterer] = [*loggers, *logging.getLogger().handlers]
    targets += [h for lg in loggers for h in lg.handlers]
    for target in targets:
        if not any(isinstance(f, RedactKeys) for f in target.filters):
            target.addFilter(RedactKeys())


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether a WebSocket from ``origin`` may connect: no Origin (not a browser), the service's own host, or
    one of the configured CORS origins (``*`` allows all)."""
    if not origin:
        return True
    if "*" in allowed or origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    netloc = urlsplit(origin).netloc.lower()
    return bool(host) and netloc == (host or "").lower()


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
_CSP = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; media-src 'self' blob:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and Referrer-Policy to every HTML
    response (ASGI). Inline scripts (Swagger UI's start-up script) are allowed by their SHA-256 only."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: dict | None = None
        chunks: list[bytes] = []

        async def wrapped(message):  # type: ignore[no-untyped-def]
            nonlocal start
            if message["type"] == "http.response.start":
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if not ctype.startswith(b"text/html"):
                    return await send(message)
                start = message  # held until the body is complete: the CSP needs its inline scripts' hashes
                return None
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return None
            body = b"".join(chunks)
            await send({**start, "headers": [*start.get("headers", []), *_html_headers(body)]})
            return await send({"type": "http.response.body", "body": body})

        return await self.app(scope, receive, wrapped)


def _html_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT.finditer(body)
    )
    return [
        (b"content-security-policy", _CSP.format(hashes=hashes).encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
    ]


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by Content-Length or while streaming (ASGI)."""

    def __init__(self, app, max_bytes: int) -> None:  # type: ignore[no-untyped-def]
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                return await self._refuse(send, int(value))
        seen = 0

        async def limited_receive():  # type: ignore[no-untyped-def]
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge(seen, self.max_bytes)
            return message

        try:
            return await self.app(scope, limited_receive, send)
        except _BodyTooLarge as exc:
            return await self._refuse(send, exc.size)

    async def _refuse(self, send, size: int) -> None:  # type: ignore[no-untyped-def]
        import json

        body = json.dumps(
            {
                "error": "body_too_large",
                "detail": f"request body of {size}+ bytes is over the limit of {self.max_bytes} bytes",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(HTTPException):
    """A body over the limit found while the app reads it: a 413 to the app's handlers and request log."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(413, f"request body of {size}+ bytes is over the limit of {limit} bytes")
        self.size = size
