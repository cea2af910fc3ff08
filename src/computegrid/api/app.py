"""The FastAPI application factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError

from computegrid import __version__
from computegrid.api.deps import AppState
from computegrid.api.limits import BodySizeLimit
from computegrid.api.metrics import RequestMetrics, StoreCollector
from computegrid.api.routes import accounts, agent, jobs, market, money, regions, sites, system
from computegrid.core.jobs import InvalidTransition
from computegrid.services.errors import ServiceError
from computegrid.services.submissions import SubmissionWriter

DEFAULT_MAX_BODY = 1024 * 1024

INDEX = """<!doctype html><html><head><meta charset="utf-8"><title>computegrid</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5}</style></head>
<body><h1>computegrid</h1><p>Pool, schedule and trade accelerator capacity. This is the control-plane API
(version %s).</p><ul><li><a href="/docs">/docs</a> &mdash; the API, with a form for every call</li>
<li><a href="/healthz">/healthz</a> &mdash; liveness and database</li>
<li><a href="/metrics">/metrics</a> &mdash; Prometheus metrics</li></ul>
<p>From a terminal: <code>computegrid submit examples/hello.yaml --wait</code>.</p></body></html>"""


class RequestCounter:
    """Counts requests and their latency without the overhead of BaseHTTPMiddleware."""

    def __init__(self, app: Any, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            self.metrics.requests.labels(scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(scope["method"]).observe(time.perf_counter() - started)


def create_app(state: AppState, *, max_body_bytes: int = DEFAULT_MAX_BODY) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if state.writer is not None:
            state.writer.close()

    app = FastAPI(title="computegrid", version=__version__, lifespan=lifespan,
                  description="Pool, schedule and trade accelerator capacity across compute centres.")
    state.registry = CollectorRegistry()
    state.http = RequestMetrics(state.registry)
    if state.writer is None:
        wake = state.scheduler_wake
        state.writer = SubmissionWriter(state.db, on_stored=(lambda n: wake.new_jobs() if n else None)
                                        if wake else None)
    state.registry.register(StoreCollector(state))
    app.state.computegrid = state
    for module in (system, accounts, sites, regions, jobs, agent, money, market):
        app.include_router(module.router)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(INDEX % __version__)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        body: dict[str, Any] = {"detail": exc.message}
        if exc.detail is not None:
            body["problems"] = exc.detail
        return JSONResponse(body, status_code=exc.status)

    @app.exception_handler(InvalidTransition)
    async def invalid_transition(_request: Request, exc: InvalidTransition) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(OverflowError)
    async def overflow(_request: Request, exc: OverflowError) -> JSONResponse:
        return JSONResponse({"detail": f"a number is out of range: {exc}"}, status_code=422)

    @app.exception_handler(DataError)
    async def data_error(_request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the checks let through (an out-of-range integer, a NUL byte in text).
        # The transaction has rolled back: nothing changed.
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "invalid value"
        return JSONResponse({"detail": f"the database refused a value: {reason}"}, status_code=422)

    app.add_middleware(BodySizeLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(RequestCounter, metrics=state.http)
    return app
