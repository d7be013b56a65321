"""The app factory and its lifespan: load the champion, open the gallery and request log, follow the alias.

At start the lifespan loads the model the source names (the MLflow ``champion``, or a local bundle) with its
own preprocessing and threshold. If the source is unreachable the app still starts, answers 503 on model
routes and ``/ready``, and keeps trying. A background task checks the source every ``poll_seconds``; a new
version is loaded beside the running one and swapped in at once (see :mod:`faceops.serving.service`); in-flight
requests finish on the model they started with. A new version with other weights gets its gallery built in the
background first (:class:`~faceops.serving.service.Rebuild`); a second task (every ``sync_seconds``) advances that
build, follows other replicas' changes in a shared PostgreSQL store (``database_url``, see
:mod:`faceops.serving.state`) and retries a database that was down.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the service itself (``/docs-assets``,
shipped by the ``fastapi-offline`` package), never from a CDN, so they work offline. Every HTML page gets a
Content-Security-Policy and anti-framing headers; no log line shows an API key (see
:mod:`faceops.serving.security`). A damaged gallery or request log is moved aside at start and replaced (see
:mod:`faceops.serving.state_files`): the service starts, and ``/ready`` lists it under ``alerts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from faceops.serving.config import ServingSettings
from faceops.serving.deps import AppContext
from faceops.serving.errors import install_error_handlers
from faceops.serving.metrics import ServiceMetrics
from faceops.serving.model_source import LocalBundleSource, MlflowAliasSource, ModelSource
from faceops.serving.routes import faces, identities, ops, stream
from faceops.serving.security import (
    ApiKeys,
    BodyLimitMiddleware,
    RateLimiter,
    SecurityHeadersMiddleware,
    install_key_redaction,
)
from faceops.serving.service import FaceService
from faceops.serving.state import open_state
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

__all__ = ["create_app", "source_for"]

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
_PRUNE_EVERY_S = 3600.0
DOCS_ASSETS = "/docs-assets"


def source_for(settings: ServingSettings) -> ModelSource:
    if settings.bundle_dir is not None:
        return LocalBundleSource(settings.bundle_dir)
    return MlflowAliasSource(settings.mlflow_uri, settings.model_alias)


def create_app(settings: ServingSettings | None = None, source: ModelSource | None = None) -> FastAPI:
    """Build the service.

    Args:
        settings: service settings; default: from ``FACEOPS_SERVE_*`` environment variables.
        source: where the model comes from; default: from the settings (bundle folder or MLflow alias).
    """
    settings = settings or ServingSettings()
    # Checked here, not in the lifespan: a service without keys refuses to start instead of refusing everyone.
    keys = ApiKeys.from_settings(settings.api_key_hashes, settings.api_keys_file, settings.allow_anonymous)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_key_redaction()  # here, after the server configured logging: no access-log line shows a key
        store, request_log, repaired = await anyio.to_thread.run_sync(open_state, settings)
        service = FaceService(settings, source or source_for(settings), store)
        if repaired is not None:
            service.repairs.append(repaired)
        metrics = ServiceMetrics()
        service.observe_stage = lambda stage, seconds: metrics.stage.labels(stage).observe(seconds)
        metrics.watch_repairs(lambda: [r.file for r in service.repairs])
        stop_metrics = metrics.serve(settings.metrics_host, settings.metrics_port) if settings.metrics_port else None
        ctx = AppContext(
            settings,
            service,
            request_log,
            metrics,
            keys,
            RateLimiter(
                settings.rate_limit_per_minute,
                settings.rate_limit_burst,
                settings.auth_failures_per_minute,
                settings.auth_failure_burst,
            ),
            anyio.CapacityLimiter(settings.inference_threads),
        )
        app.state.ctx = ctx
        await anyio.to_thread.run_sync(request_log.prune)
        await _refresh(ctx)
        tasks = [asyncio.create_task(_watch(ctx)), asyncio.create_task(_follow(ctx))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            request_log.close()
            store.close()
            if stop_metrics is not None:
                stop_metrics()

    # FastAPI's own /docs and /redoc pages load Swagger UI and ReDoc from a CDN: these serve the same pages with
    # the assets from the package, so the API docs work without internet access.
    app = FastAPIOffline(
        static_url=DOCS_ASSETS,
        title="FaceOps",
        version="1",
        lifespan=lifespan,
        description="Face detection, recognition, verification and enrollment; live video over "
        "WebSocket. Every endpoint but /health and /ready (which says more with one) needs an API key "
        "(X-API-Key header).",
    )
    install_error_handlers(app)
    for module in (faces, identities, ops, stream):
        app.include_router(module.router)
    _build_routes(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/ui")

    @app.get("/ui", include_in_schema=False)
    async def ui() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeadersMiddleware)  # CSP and anti-framing on every HTML page (/ui, /docs, /redoc)
    return app


def _build_routes(app: FastAPI) -> None:
    """Have FastAPI analyse every route now, in this one thread.

    FastAPI (0.165) analyses an included router's routes lazily, at the first request, and the analysis writes to
    the parameter objects the route functions share across apps; two apps doing it at once (two replicas in one
    process, as the tests run them) can trip over each other (seen as a pydantic warning, a 500 under -W error).
    """
    scope = {"type": "http", "path": "/", "method": "GET", "headers": [], "query_string": b"", "root_path": ""}
    for route in app.router.routes:
        route.matches(scope)


async def _refresh(ctx: AppContext) -> None:
    changed = await anyio.to_thread.run_sync(ctx.service.refresh)
    ctx.metrics.source_up.set(0 if ctx.service.source_error else 1)
    _published(ctx, changed)


def _published(ctx: AppContext, changed: bool) -> None:
    """Bring the metrics up to date with the service (after a refresh or a background step)."""
    service, metrics = ctx.service, ctx.metrics
    metrics.database_up.set(0 if service.store_error else 1)
    rebuild = service.rebuild
    metrics.rebuild_remaining.set(rebuild.remaining if rebuild else 0)
    metrics.rebuild_progress.set(rebuild.progress if rebuild else 1.0)
    if not service.ready:
        return
    state = service.state
    metrics.gallery_size.set(state.gallery.identity_count)
    if changed:
        metrics.set_model(state.model.version, state.model.recognizer.model_id, state.model.threshold)
        if service.swaps:
            metrics.swaps.inc()


async def _follow(ctx: AppContext) -> None:
    """Every ``sync_seconds`` (at once while a gallery is being built): one background step of the service."""
    while True:
        if not ctx.service.busy():
            await asyncio.sleep(ctx.settings.sync_seconds)
        try:
            changed = await anyio.to_thread.run_sync(ctx.service.tick)
            _published(ctx, changed)
        except Exception:  # noqa: BLE001 - like the watcher: log, keep serving, try again
            log.exception("background step failed")
            await asyncio.sleep(ctx.settings.sync_seconds)


async def _watch(ctx: AppContext) -> None:
    """Follow the source: check for a new version every ``poll_seconds``; prune the log hourly."""
    since_prune = 0.0
    while True:
        await asyncio.sleep(ctx.settings.poll_seconds)
        try:
            await _refresh(ctx)
            since_prune += ctx.settings.poll_seconds
            if since_prune >= _PRUNE_EVERY_S:
                since_prune = 0.0
                await anyio.to_thread.run_sync(ctx.log.prune)
        except Exception:  # noqa: BLE001 - the watcher must never die; the service keeps serving
            log.exception("model watcher iteration failed")
