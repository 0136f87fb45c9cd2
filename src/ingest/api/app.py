"""`create_app()`: the FastAPI app. Its lifespan opens the Runtime and, with no broker configured, runs
the pipeline's workers in this process (the embedded default), so uploads are processed with nothing else
started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route

import ingest
from ingest.api import errors, openapi
from ingest.api.bodylimit import BodyLimit
from ingest.api.metrics import Metrics, MetricsMiddleware
from ingest.api.request_limits import build_limiter
from ingest.api.routes import (
    chunks,
    cost_history,
    costs,
    documents,
    health,
    jobs,
    reembed,
    router_modes,
    search,
    status,
    webhooks,
)
from ingest.api.state import ApiState
from ingest.config import Settings
from ingest.console import routes as console
from workers.inprocess import serving
from workers.runtime import Runtime

log = structlog.get_logger(__name__)

DESCRIPTION = """Upload documents; workers parse, chunk and embed them into pgvector; search what you stored.

Every call under `/v1` needs `Authorization: Bearer <key>` (`ingest keys create --user NAME`) and sees
only that user's documents, jobs and chunks. Errors are `{"error": {"code", "message"}}`."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics(lambda: _runtime_of(app))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = await run_in_threadpool(Runtime.open, settings)
        try:
            with serving(rt, threads=settings.worker_threads) as local_workers:
                app.state.api = ApiState(rt=rt, limiter=build_limiter(settings), metrics=metrics)
                log.info("api_started", workers="in-process" if local_workers else "broker")
                yield
        finally:
            rt.close()

    app = FastAPI(
        title="ingest",
        version=ingest.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by the console from vendored assets, never from a CDN
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    routes = (
        documents,
        chunks,
        jobs,
        search,
        costs,
        cost_history,
        router_modes,
        reembed,
        status,
        webhooks,
        health,
    )
    for module in routes:
        app.include_router(module.router)
    openapi.install(app)
    console.install(app)
    metrics.templates = {route.endpoint: route.path for route in app.routes if isinstance(route, Route)}
    return app


def _runtime_of(app: FastAPI) -> Runtime | None:
    state: ApiState | None = getattr(app.state, "api", None)
    return state.rt if state is not None else None
