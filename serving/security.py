"""API keys, rate limiting, body-size limits and content sniffing.

API keys are random tokens (:func:`new_api_key`); the service stores only their SHA-256 digests (a fast hash
is enough for 256-bit random secrets, unlike passwords) and compares digests in constant time. Keys arrive in
the ``X-API-Key`` header, ``Authorization: Bearer``, or (WebSocket only, browsers cannot set headers there)
the ``api_key`` query parameter.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from pathlib import Path

from faceops.errors import ConfigError, UnsupportedImage

__all__ = ["ApiKeys", "BodyLimitMiddleware", "RateLimiter", "hash_key", "new_api_key", "sniff_image"]

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
    """A token bucket per client: ``per_minute`` sustained, ``burst`` at once; thread-safe."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0.0 if the request may go ahead, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


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
                    raise _BodyTooLarge(seen)
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


class _BodyTooLarge(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size
