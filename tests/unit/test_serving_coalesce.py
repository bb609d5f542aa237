"""Small invocations that arrive together share one call to the evaluator
(yws.server.coalesce): each caller gets its own rows back, in order, and one failing request
never fails the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from yws.server.coalesce import MAX_BATCH_ROWS, Coalescer


def test_requests_that_arrive_together_share_a_call_and_get_their_own_rows():
    calls: list[int] = []

    def score(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        calls.append(len(rows))
        return [{"echo": r["i"]} for r in rows]

    async def main() -> list[list[dict[str, Any]]]:
        c = Coalescer()
        requests = [[{"i": (n, k)} for k in range(1 + n % 3)] for n in range(50)]
        return await asyncio.gather(*(c.score("m", rows, score) for rows in requests))

    answers = asyncio.run(main())
    for n, answer in enumerate(answers):
        assert answer == [{"echo": (n, k)} for k in range(1 + n % 3)]
    assert len(calls) < 50 and sum(calls) == sum(1 + n % 3 for n in range(50))
    assert max(calls) <= MAX_BATCH_ROWS


def test_a_failing_request_fails_alone():
    def score(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if any(r.get("bad") for r in rows):
            raise ValueError("bad row")
        return [{"ok": r["i"]} for r in rows]

    async def main() -> list[Any]:
        c = Coalescer()
        requests = [[{"i": n, "bad": n == 7}] for n in range(20)]
        return await asyncio.gather(*(c.score("m", rows, score) for rows in requests),
                                    return_exceptions=True)

    answers = asyncio.run(main())
    for n, answer in enumerate(answers):
        if n == 7:
            assert isinstance(answer, ValueError)
        else:
            assert answer == [{"ok": n}]


def test_a_caller_that_goes_away_leaves_the_others_their_answers():
    async def main() -> list[Any]:
        c = Coalescer()

        def score(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"ok": r["i"]} for r in rows]

        tasks = [asyncio.ensure_future(c.score("m", [{"i": n}], score)) for n in range(10)]
        await asyncio.sleep(0)
        tasks[3].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(main())
    assert isinstance(answers[3], asyncio.CancelledError)
    assert [a for n, a in enumerate(answers) if n != 3] == [[{"ok": n}] for n in range(10)
                                                            if n != 3]


@pytest.mark.parametrize("keys", [["a", "b"]])
def test_each_model_version_has_its_own_queue(keys):
    seen: list[set[str]] = []

    def scorer(key: str):
        def score(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            seen.append({r["key"] for r in rows})
            return [{"key": key} for _ in rows]
        return score

    async def main() -> list[Any]:
        c = Coalescer()
        return await asyncio.gather(*(c.score(k, [{"key": k}], scorer(k))
                                      for _ in range(10) for k in keys))

    answers = asyncio.run(main())
    assert all(len(s) == 1 for s in seen)
    assert answers == [[{"key": k}] for _ in range(10) for k in keys]
