"""The server's durable state in ``$YWS_HOME/server.db`` (SQLite): tokens, runs, task runs.

Tokens are stored as SHA-256 hashes only. Run ids come from one sequence shared by job runs and
task runs, as on Databricks. Every write is one SQLite transaction.

A run's token (:meth:`Store.run_token`) is the credential ``yws serve`` hands the task
processes of one job run: it acts as the job's ``run_as`` principal and is deleted when the
run ends (:meth:`Store.revoke_run_tokens`), or, after a crash, when the server starts again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yws.errors import InvalidValueError, NotFoundError

# An idempotency token is one principal's: unique per job, principal (creator) and token.
RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
  run_id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, job_name TEXT NOT NULL,
  params TEXT NOT NULL, idempotency_token TEXT, creator TEXT NOT NULL,
  life_cycle_state TEXT NOT NULL, result_state TEXT, state_message TEXT NOT NULL DEFAULT '',
  termination_code TEXT, start_time INTEGER NOT NULL, end_time INTEGER NOT NULL DEFAULT 0,
  only_tasks TEXT, queue_duration INTEGER NOT NULL DEFAULT 0,
  UNIQUE (job_id, creator, idempotency_token))"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
  token_hash TEXT PRIMARY KEY, principal TEXT NOT NULL, groups TEXT NOT NULL,
  created_at REAL NOT NULL, comment TEXT);
CREATE TABLE IF NOT EXISTS ids (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL);
""" + RUNS_TABLE.format(name="runs") + """;
CREATE TABLE IF NOT EXISTS task_runs (
  run_id INTEGER PRIMARY KEY, parent_run_id INTEGER NOT NULL, task_key TEXT NOT NULL,
  depends_on TEXT NOT NULL, life_cycle_state TEXT NOT NULL, result_state TEXT,
  state_message TEXT NOT NULL DEFAULT '', start_time INTEGER NOT NULL DEFAULT 0,
  end_time INTEGER NOT NULL DEFAULT 0, logs TEXT, error TEXT, error_trace TEXT,
  attempt INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS repairs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER NOT NULL, repair_id INTEGER,
  start_time INTEGER NOT NULL, end_time INTEGER NOT NULL DEFAULT 0,
  life_cycle_state TEXT, result_state TEXT, termination_code TEXT,
  state_message TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS jobs (
  job_id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_time INTEGER NOT NULL);
"""
# Columns added after the first release: ALTER TABLE adds each one an older server.db lacks.
ADDED_COLUMNS = {
    # the job run a token was made for (NULL: a token made by `yws tokens create`)
    "tokens": [("run_id", "INTEGER")],
    "runs": [("only_tasks", "TEXT"), ("queue_duration", "INTEGER NOT NULL DEFAULT 0")],
    # a task run is one attempt: repair_id says which repair made it (NULL: the run itself);
    # exec_start/exec_end bound its process, for the setup/execution/cleanup durations
    "task_runs": [("repair_id", "INTEGER"), ("exec_start", "INTEGER NOT NULL DEFAULT 0"),
                  ("exec_end", "INTEGER NOT NULL DEFAULT 0"),
                  ("logs_truncated", "INTEGER NOT NULL DEFAULT 0")],
}
ACTIVE = ("PENDING", "QUEUED", "RUNNING", "TERMINATING", "BLOCKED", "WAITING_FOR_RETRY")
# The documented terminal life cycle states (Jobs API 2.2, RunLifeCycleState).
TERMINAL = ("TERMINATED", "SKIPPED", "INTERNAL_ERROR")
SERVER_STOPPED = ("the server stopped while this run was in progress; its task processes were "
                  "stopped; start a new run")


def now_ms() -> int:
    return int(time.time() * 1000)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    name: str
    groups: tuple[str, ...]

    @property
    def identities(self) -> set[str]:
        return {self.name, *self.groups}


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate_runs()
        self._db.executescript(SCHEMA)
        self._add_columns()

    def _migrate_runs(self) -> None:
        """A server.db from before tokens were scoped per principal has ``UNIQUE (job_id,
        idempotency_token)`` on runs, which SQLite cannot drop: copy the table into the new
        shape (same rows) in one transaction."""
        row = self._db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'runs'").fetchone()
        if row is None or "creator, idempotency_token" in " ".join(row[0].split()):
            return
        old = [r[1] for r in self._db.execute("PRAGMA table_info(runs)")]
        cols = ", ".join(old)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DROP TABLE IF EXISTS runs_migrated")
            self._db.execute(RUNS_TABLE.format(name="runs_migrated"))
            self._db.execute(f"INSERT INTO runs_migrated ({cols}) SELECT {cols} FROM runs")
            self._db.execute("DROP TABLE runs")
            self._db.execute("ALTER TABLE runs_migrated RENAME TO runs")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns:
                if name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args))

    # -- tokens --------------------------------------------------------------------------------
    def create_token(self, principal: str, groups: list[str], comment: str = "",
                     run_id: int | None = None) -> str:
        token = "dapi" + secrets.token_hex(16)
        with self.tx() as db:
            db.execute("INSERT INTO tokens (token_hash, principal, groups, created_at, comment, "
                       "run_id) VALUES (?, ?, ?, ?, ?, ?)",
                       (hash_token(token), principal, json.dumps(sorted(set(groups))),
                        time.time(), comment, run_id))
        return token

    def run_token(self, principal: str, run_id: int) -> str:
        """A token for the task processes of job run ``run_id`` that acts as ``principal`` (the
        job's ``run_as``): its name, and the groups its own tokens carry (locally a principal's
        groups are known from its tokens only). Deleted by :meth:`revoke_run_tokens`."""
        rows = self.query("SELECT groups FROM tokens WHERE principal = ? AND run_id IS NULL",
                          (principal,))
        groups = sorted({g for r in rows for g in json.loads(r["groups"])})
        return self.create_token(principal, groups, f"job run {run_id} (revoked when it ends)",
                                 run_id=run_id)

    def revoke_run_tokens(self, run_id: int | None = None) -> int:
        """Delete the tokens of job run ``run_id`` (of every run when None: no run outlives a
        server); they stop working at once. The number deleted."""
        with self.tx() as db:
            if run_id is None:
                return int(db.execute("DELETE FROM tokens WHERE run_id IS NOT NULL").rowcount)
            return int(db.execute("DELETE FROM tokens WHERE run_id = ?", (run_id,)).rowcount)

    def tokens(self) -> list[dict[str, Any]]:
        """Every token by its id (the first 12 hex digits of its hash), never the secret."""
        rows = self.query("SELECT token_hash, principal, groups, created_at, comment "
                          "FROM tokens ORDER BY created_at")
        return [{"id": r["token_hash"][:12], "principal": r["principal"],
                 "groups": json.loads(r["groups"]), "created_at": r["created_at"],
                 "comment": r["comment"] or ""} for r in rows]

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Delete the one token whose id is ``token_id``; it stops working at once."""
        token_id = token_id.strip().lower()
        if not (6 <= len(token_id) <= 64 and all(c in "0123456789abcdef" for c in token_id)):
            raise InvalidValueError(
                f"token id {token_id!r} is not one: `yws tokens list` shows them")
        with self.tx() as db:
            rows = list(db.execute("SELECT token_hash, principal FROM tokens "
                                   "WHERE substr(token_hash, 1, ?) = ?",
                                   (len(token_id), token_id)))
            if not rows:
                raise NotFoundError(f"no token has the id {token_id}: `yws tokens list` shows "
                                  "them")
            if len(rows) > 1:
                raise InvalidValueError(f"{len(rows)} tokens have an id starting {token_id}: give "
                                  "more of it (`yws tokens list` shows them)")
            db.execute("DELETE FROM tokens WHERE token_hash = ?", (rows[0]["token_hash"],))
        return {"id": token_id, "principal": rows[0]["principal"]}

    def principal(self, token: str) -> Principal | None:
        rows = self.query("SELECT principal, groups FROM tokens WHERE token_hash = ?",
                          (hash_token(token),))
        if not rows:
            return None
        return Principal(rows[0]["principal"], tuple(json.loads(rows[0]["groups"])))

    # -- jobs, ids and runs -------------------------------------------------------------------
    def job_created(self, jobs: dict[int, str]) -> dict[int, int]:
        """Each job's ``created_time``: when this server first saw it (epoch ms), recorded now
        for a job it has not seen before, so the time survives restarts."""
        with self.tx() as db:
            for job_id, name in jobs.items():
                db.execute("INSERT OR IGNORE INTO jobs (job_id, name, created_time) "
                           "VALUES (?, ?, ?)", (job_id, name, now_ms()))
            return {int(r["job_id"]): int(r["created_time"])
                    for r in db.execute("SELECT job_id, created_time FROM jobs")
                    if int(r["job_id"]) in jobs}

    def next_id(self, db: sqlite3.Connection, kind: str) -> int:
        cur = db.execute("INSERT INTO ids (kind) VALUES (?)", (kind,))
        assert cur.lastrowid is not None
        return int(cur.lastrowid) + 1000  # ids that look like ids, not like counters

    def fail_interrupted(self) -> int:
        """End what a previous server left unfinished: nothing runs it any more (the caller
        has killed its task processes). Each active run ends ``INTERNAL_ERROR`` (result
        ``FAILED``), and so does every task row not yet in a terminal state — of those runs or
        of any other — so no task stays ``RUNNING`` after its run; a task that never started
        is ``SKIPPED`` (``CANCELED``). The number of runs."""
        marks = ",".join("?" * len(ACTIVE))
        ends = ",".join("?" * len(TERMINAL))
        with self.tx() as db:
            n = db.execute(
                f"UPDATE runs SET life_cycle_state = 'INTERNAL_ERROR', result_state = 'FAILED', "
                f"state_message = ?, termination_code = 'INTERNAL_ERROR', end_time = ? "
                f"WHERE life_cycle_state IN ({marks})",
                (SERVER_STOPPED, now_ms(), *ACTIVE)).rowcount
            db.execute(
                "UPDATE task_runs SET life_cycle_state = 'SKIPPED', result_state = 'CANCELED', "
                "state_message = ?, end_time = ? WHERE life_cycle_state IN ('PENDING', 'BLOCKED')",
                (SERVER_STOPPED, now_ms()))
            db.execute(
                f"UPDATE task_runs SET life_cycle_state = 'INTERNAL_ERROR', "
                f"result_state = 'FAILED', state_message = ?, end_time = ? "
                f"WHERE life_cycle_state NOT IN ({ends})", (SERVER_STOPPED, now_ms(), *TERMINAL))
        return int(n)
