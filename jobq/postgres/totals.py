"""The running totals of a PostgreSQL queue (:mod:`jobq.totals`): table ``jobq_totals``, added
to in the transaction that records a batch (one statement a batch) and by the statement that
appends jobs (a CTE of it: no round trip more).

Rows are spread over :data:`SHARDS` shards by the server process (``pg_backend_pid()``): two
workers settling at once would otherwise queue on the same row's lock until each commits; a
read sums the shards. Keys are added in sorted order, so two transactions lock the rows they
share in the same order (no deadlock).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import psycopg

from ..totals import Key
from .db import Db

SHARDS = 16
SHARD = f"mod(pg_backend_pid(), {SHARDS})"  # mod, not %: a placeholder sign

MIGRATION = (
    """CREATE TABLE jobq_totals (
        queue text COLLATE "C" NOT NULL, shard integer NOT NULL, name text COLLATE "C" NOT NULL,
        task text COLLATE "C" NOT NULL, n double precision NOT NULL,
        PRIMARY KEY (queue, shard, name, task))""",
    # Counted from the jobs kept when the table is made: a queue made before it starts there.
    "INSERT INTO jobq_totals (queue, shard, name, task, n) SELECT queue, 0, 'enqueued', '',"
    " count(*) FROM jobq_payloads GROUP BY queue",
    "INSERT INTO jobq_totals (queue, shard, name, task, n) SELECT queue, 0,"
    " CASE status WHEN 'dead' THEN 'failed' ELSE status END, '', count(*) FROM jobq_done"
    " WHERE status IN ('succeeded', 'dead') GROUP BY queue, status",
)

# Appended to jobq.postgres.append's statement: ``ins`` is its insert of new jobs.
ENQUEUED = (
    "INSERT INTO jobq_totals (queue, shard, name, task, n)"
    f" SELECT %(q)s, {SHARD}, 'enqueued', '', count(*) FROM ins HAVING count(*) > 0"
    " ON CONFLICT (queue, shard, name, task) DO UPDATE SET n = jobq_totals.n + EXCLUDED.n")

_ADD = (
    "INSERT INTO jobq_totals (queue, shard, name, task, n)"
    f" SELECT %s, {SHARD}, v.name, v.task, v.n FROM unnest(%s::text[], %s::text[],"
    " %s::float8[]) AS v(name, task, n)"
    " ON CONFLICT (queue, shard, name, task) DO UPDATE SET n = jobq_totals.n + EXCLUDED.n")


def add(conn: psycopg.Connection[Any], queue: str, delta: Counter[Key]) -> None:
    """Inside the transaction that recorded what ``delta`` counts."""
    if not delta:
        return
    keys = sorted(delta)
    conn.execute(_ADD, (queue, [k[0] for k in keys], [k[1] for k in keys],
                        [float(delta[k]) for k in keys]), prepare=True)


def read(db: Db, queue: str) -> dict[Key, float]:
    return {(name, task): float(n) for name, task, n in db.execute(
        "SELECT name, task, sum(n) FROM jobq_totals WHERE queue = %s GROUP BY name, task",
        (queue,))}
