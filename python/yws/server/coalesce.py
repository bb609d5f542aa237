"""Small invocations that arrive together are scored together.

Scoring one row costs about as much as scoring fifty (the evaluator's cost is per call: Arrow
tables, the quarantine rules, each pipeline stage). So while one batch is being scored, the
requests that arrive queue up, and the next call scores all their rows at once and hands each
request its own rows back. A row's answer depends on that row alone (no entity key or duplicate
rule applies to a single row, see :mod:`yws.scoring.records`), so it is the same whether the row
is scored alone or beside others, to the last bit (the evaluator sums each row's terms column
by column: tests/unit/test_evaluator_rows.py). A request
that would be refused whole (a feature missing from all its rows) is refused before it joins a
batch, and if a batch fails anyway, each of its requests is scored on its own, so one request
can never fail another."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from starlette.concurrency import run_in_threadpool

Rows = list[dict[str, Any]]
Score = Callable[[Rows], list[dict[str, Any]]]
Waiting = tuple[Rows, "asyncio.Future[list[dict[str, Any]]]"]

MAX_BATCH_ROWS = 2048
INLINE_ROWS = 256


class Coalescer:
    """One queue per key (a served model version): ``await score(key, rows, fn)``."""

    def __init__(self) -> None:
        self._queues: dict[Hashable, list[Waiting]] = {}
        self._draining: set[Hashable] = set()

    async def score(self, key: Hashable, rows: Rows, fn: Score) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict[str, Any]]] = \
            asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, []).append((rows, future))
        if key not in self._draining:
            self._draining.add(key)
            asyncio.get_running_loop().create_task(self._drain(key, fn))
        return await future

    async def _drain(self, key: Hashable, fn: Score) -> None:
        try:
            while self._queues.get(key):
                queue = self._queues[key]
                batch: list[Waiting] = []
                size = 0
                while queue and (not batch or size + len(queue[0][0]) <= MAX_BATCH_ROWS):
                    rows, future = queue.pop(0)
                    batch.append((rows, future))
                    size += len(rows)
                await self._run(batch, fn)
        finally:
            self._draining.discard(key)
            if not self._queues.get(key):
                self._queues.pop(key, None)

    @staticmethod
    async def _run(batch: list[Waiting], fn: Score) -> None:
        everything = [row for rows, _ in batch for row in rows]
        try:
            # a few hundred rows take a millisecond or two: scored on the event loop, where a
            # hop to a thread and back would cost about as much; more in the thread pool
            out = fn(everything) if len(everything) <= INLINE_ROWS else \
                await run_in_threadpool(fn, everything)
        except Exception:  # noqa: BLE001 — each request again, alone, to get its own answer
            for rows, future in batch:
                try:
                    alone = await run_in_threadpool(fn, rows)
                except Exception as e:  # noqa: BLE001
                    if not future.done():
                        future.set_exception(e)
                    continue
                if not future.done():
                    future.set_result(alone)
            return
        start = 0
        for rows, future in batch:
            if not future.done():  # a request whose client went away was cancelled
                future.set_result(out[start:start + len(rows)])
            start += len(rows)
