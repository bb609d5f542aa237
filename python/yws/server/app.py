"""``yws serve``: the Jobs API 2.2, SQL Statement Execution API 2.0 and Model Serving
subsets, locally.

Every request needs a bearer token made by ``yws tokens create``; tokens are never logged.
Errors come back in the Databricks shape so the official clients raise their usual exceptions.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from yws.config import Settings
from yws.deploy.bundle import load
from yws.scoring.ai_query import Endpoints, served_routes
from yws.server import files_routes, jobs_routes, serving_routes, sessions, sql_routes
from yws.server.context import Api
from yws.server.errors import ApiError, unauthenticated
from yws.server.jobs import Runner, catalog, deployer
from yws.server.limits import install, parse_object
from yws.server.serving import ServingService
from yws.server.sessions import RefusesTls
from yws.server.sql_api import StatementService
from yws.server.store import Principal, Store


class PlainHttpToolsProtocol(RefusesTls, HttpToolsProtocol):
    """``yws serve``'s HTTP (uvicorn's ``http=``): uvicorn's httptools protocol, which reads and
    writes a small request in about half the CPU time of its h11 one (pure Python), with
    :class:`~yws.server.sessions.RefusesTls`'s answer to a TLS handshake: a fatal TLS alert,
    and the log says which ``http://`` address to use."""


class RateLimiter:
    """A token bucket per principal: bursts pass, a flood gets 429 with Retry-After."""

    def __init__(self, per_second: float = 50.0, burst: int = 200) -> None:
        self.rate, self.burst = per_second, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str) -> None:
        with self._lock:
            tokens, last = self._buckets.get(who, (float(self.burst), time.monotonic()))
            now = time.monotonic()
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < 1:
                raise ApiError(429, "REQUEST_LIMIT_EXCEEDED",
                               f"too many requests from {who}; retry after 1 second",
                               {"Retry-After": "1"})
            self._buckets[who] = (tokens - 1, now)


def create_app(settings: Settings, bundle_root: Path | None = None, target: str = "dev",
               variables: dict[str, str] | None = None, bin_dir: Path | None = None) -> FastAPI:
    """The server for ``settings``' home: the jobs of the bundle in ``bundle_root`` (its
    ``target``'s variables, overridden by ``variables``), their tasks' console scripts taken
    from ``bin_dir`` (default: beside this Python)."""
    store = Store(settings.home.resolve() / "server.db")
    bundle = load(bundle_root)
    runner = Runner(settings, store, catalog(bundle, target, variables), bin_dir)
    serving = ServingService(settings, bundle, target, variables, deployer())
    statements = StatementService(settings)
    if serving.endpoints:  # ai_query scores with the version each endpoint serves now
        statements.warehouse.serve_endpoints(
            Endpoints(settings, routes=lambda: served_routes(serving.endpoints)))
    limiter = RateLimiter()
    app = FastAPI(title="yws serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runner, app.state.store, app.state.statements = runner, store, statements
    app.state.serving = serving
    install(app)  # body-size limits; every other error Databricks-shaped, 500s included

    @app.exception_handler(ApiError)
    async def api_error(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error_code": e.code, "message": e.message}, e.status,
                            headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(part) for part in err.get('loc', ()))}: "
                             f"{err.get('msg', '')}" for err in e.errors()[:3])
        return JSONResponse({"error_code": "INVALID_PARAMETER_VALUE",
                             "message": f"invalid request: {problems}"[:1000]}, 400)

    @app.exception_handler(404)
    async def no_route(request: Request, _: Exception) -> JSONResponse:
        return JSONResponse({"error_code": "ENDPOINT_NOT_FOUND",
                             "message": f"No API found for '{request.method} "
                                        f"{request.url.path}'"}, 404)

    def who(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise unauthenticated("a bearer token is required: create one with "
                                  "`yws tokens create --principal NAME`")
        principal = store.principal(token.strip())
        if principal is None:
            raise unauthenticated("Invalid access token.")
        limiter.check(principal.name)
        return principal

    async def body(request: Request) -> dict[str, Any]:
        return parse_object(await request.body())  # bounded: see yws.server.limits

    api = Api(store, runner, statements, who, body)
    jobs_routes.add_routes(app, api)
    sql_routes.add_routes(app, api)
    sessions.add_routes(app, api)  # SQL sessions (databricks-sql-connector), Thrift refused
    files_routes.add_routes(app, api)  # Files API for the volumes sql/ creates
    # Model Serving: invocations have a limiter of their own, sized for on-demand scoring
    serving_routes.add_routes(app, api, serving, RateLimiter(per_second=5000, burst=5000).check)

    @app.on_event("shutdown")
    def stop_tasks() -> None:
        runner.cancel_all()
        statements.shutdown()

    return app
