"""What every route module of ``yws serve`` shares: the store, the runner, the statement
service, and the two request helpers (who is calling, the bounded JSON body)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from yws.server.jobs import Runner
from yws.server.sql_api import StatementService
from yws.server.store import Principal, Store


@dataclass(frozen=True)
class Api:
    store: Store
    runner: Runner
    statements: StatementService
    who: Callable[[Request], Principal]  # the caller's principal; raises 401 / 429
    body: Callable[[Request], Awaitable[dict[str, Any]]]  # the request's JSON object
