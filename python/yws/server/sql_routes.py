"""The SQL Statement Execution API 2.0 routes of ``yws serve`` (and the warehouses list).

The statements themselves run in :class:`yws.server.sql_api.StatementService`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from yws.server import sessions
from yws.server.context import Api
from yws.server.limits import check_statement


def add_routes(app: FastAPI, api: Api) -> None:
    statements, who, body = api.statements, api.who, api.body
    # ai_query names an endpoint: the caller must be allowed to query it (CAN_QUERY), as
    # Model Serving's own invocations route checks (yws.server.serving)
    serving = getattr(app.state, "serving", None)
    if serving is not None and serving.endpoints:
        statements.check_endpoints_with(
            lambda principal, name: serving.endpoint(name, principal, "CAN_QUERY"))

    # -- SQL Statement Execution API 2.0 -------------------------------------------------
    @app.get("/api/2.0/sql/warehouses")
    def warehouses(request: Request) -> dict[str, Any]:
        who(request)
        return statements.warehouses(str(request.base_url))

    @app.get("/api/2.0/sql/warehouses/{warehouse_id}")
    def warehouse(request: Request, warehouse_id: str) -> dict[str, Any]:
        who(request)
        return statements.get_warehouse(warehouse_id, str(request.base_url))

    @app.post("/api/2.0/sql/statements")
    async def execute(request: Request) -> dict[str, Any]:
        principal = who(request)
        payload = await body(request)  # any content type, as curl -d sends
        payload = sessions.statement_request(request, payload, principal)  # session_id
        check_statement(payload)
        # the wait for the statement happens in the thread pool, never in the event loop
        result: dict[str, Any] = await run_in_threadpool(
            statements.submit, payload, principal, str(request.base_url))
        return result

    @app.get("/api/2.0/sql/statements/{statement_id}")
    def statement(request: Request, statement_id: str) -> dict[str, Any]:
        principal = who(request)
        return statements.response(statements.get(statement_id, principal),
                                   str(request.base_url))

    @app.get("/api/2.0/sql/statements/{statement_id}/result/chunks/{index}")
    def chunk(request: Request, statement_id: str, index: int) -> dict[str, Any]:
        principal = who(request)
        return statements.chunk(statements.get(statement_id, principal), index,
                                str(request.base_url))

    @app.get("/api/2.0/sql/results/{statement_id}/{index}/{secret}")
    def result_link(statement_id: str, index: int, secret: str) -> Response:
        data, kind = statements.link_payload(statement_id, index, secret)
        return Response(content=data, media_type=kind)

    @app.post("/api/2.0/sql/statements/{statement_id}/cancel")
    def cancel(request: Request, statement_id: str) -> dict[str, Any]:
        statements.cancel(statement_id, who(request))
        return {}

    @app.delete("/api/2.0/sql/statements/{statement_id}")
    def close_statement(request: Request, statement_id: str) -> dict[str, Any]:
        statements.close(statement_id, who(request))  # as the SQL connector closes a result
        return {}
