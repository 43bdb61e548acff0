"""Raw PostgreSQL baselines for scripts/bench_pg.py: what the server and psycopg do with no queue.

    python scripts/pg_baselines.py claim --dsn DSN --batch K --worker NAME

- ``claim_drain``: the claim loop's drain, 2 processes (bench_pg.py's figure);
- ``insert_loop``: one INSERT and one COMMIT per row, one connection;
- ``copy_rows``: COPY of N rows in one transaction;
- ``claim``: the bare batched claim loop, one process (the benchmark starts two). In one
  transaction: record the previous batch as finished (fenced by its token), claim the next K with
  ``WITH c AS (SELECT ... ORDER BY priority DESC, seq LIMIT K FOR UPDATE SKIP LOCKED) UPDATE ...
  RETURNING``, commit durably; then unpickle each payload and call a no-op. It exits when a claim
  returns nothing, after recording its last batch.

The table is what a queue needs and no more: a partial index on ready rows for the claim, the
payload in the row, finished rows kept (``status = 'succeeded'``, ``finished_at`` set by the
server's clock when recorded).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

import pg_server
from peers.tasks import noop

TABLE = "raw_jobs"
PAYLOAD = pickle.dumps((noop, (), {}, b"x" * 220))  # about 300 bytes, as a small job's frame
SCHEMA = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    priority int NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'ready',
    token int NOT NULL DEFAULT 0,
    worker text,
    finished_at timestamptz,
    payload bytea NOT NULL
);
CREATE INDEX {TABLE}_ready ON {TABLE} (priority DESC, seq) WHERE status = 'ready';
"""
FINISH = f"""
UPDATE {TABLE} j SET status = 'succeeded', finished_at = clock_timestamp()
FROM unnest(%s::bigint[], %s::int[]) AS f(seq, token)
WHERE j.seq = f.seq AND j.token = f.token AND j.status = 'running'
"""
CLAIM = f"""
WITH c AS (
    SELECT seq FROM {TABLE} WHERE status = 'ready'
    ORDER BY priority DESC, seq LIMIT %s FOR UPDATE SKIP LOCKED
)
UPDATE {TABLE} j SET status = 'running', token = j.token + 1, worker = %s
FROM c WHERE j.seq = c.seq
RETURNING j.seq, j.token, j.payload
"""


def reset(dsn: str) -> None:
    """An empty table, made anew (no dead rows left by the last measurement)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def insert_loop(dsn: str, n: int) -> float:
    """Rows per second: one INSERT + COMMIT per row on one connection."""
    reset(dsn)
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        for _ in range(n):
            conn.execute(f"INSERT INTO {TABLE} (payload) VALUES (%s)", [PAYLOAD])
            conn.commit()
        return n / (time.perf_counter() - start)


def copy_rows(dsn: str, n: int) -> float:
    """Rows per second: COPY of n rows and its commit, one transaction."""
    reset(dsn)
    with psycopg.connect(dsn) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (payload) FROM STDIN") as copy:
            for _ in range(n):
                copy.write_row((PAYLOAD,))
        conn.commit()
        return n / (time.perf_counter() - start)


def drain_outcome(dsn: str, n: int) -> dict[str, Any]:
    """After a claim drain: when the first and last jobs were recorded (epoch seconds), how many
    were lost or claimed twice."""
    with psycopg.connect(dsn) as conn:
        first, last, done, twice = conn.execute(
            f"SELECT extract(epoch FROM min(finished_at))::float8,"
            f" extract(epoch FROM max(finished_at))::float8,"
            f" count(*) FILTER (WHERE status = 'succeeded'),"
            f" count(*) FILTER (WHERE token > 1) FROM {TABLE}").fetchone()
    return {"first": first, "last": last, "lost": n - done, "duplicated": twice}


def claim_drain(dsn: str, batch: int, n: int, root: Path) -> tuple[float, str]:
    """The bare claim loop, 2 processes, over n jobs queued by COPY first: jobs/s and a note."""
    copy_rows(dsn, n)
    started = time.time()
    procs = [pg_server.spawn([sys.executable, __file__, "claim", "--dsn", dsn, "--batch",
                              str(batch), "--worker", f"w{i}"], root) for i in range(2)]
    pg_server.wait(procs, f"claim loop K={batch}")
    outcome = drain_outcome(dsn, n)
    if outcome["lost"] or outcome["duplicated"]:
        raise RuntimeError(f"claim loop K={batch}: {outcome}")
    steady = n / max(outcome["last"] - outcome["first"], 1e-6)
    return (n / (outcome["last"] - started),
            f"N={n:,}, 0 lost, 0 claimed twice; {steady:,.0f}/s from the first completion")


def claim(dsn: str, batch: int, worker: str) -> int:
    """Run the claim loop until the table has nothing ready; the number of jobs run."""
    ran = 0
    done: list[tuple[int, int]] = []
    with psycopg.connect(dsn) as conn:
        while True:
            if done:
                conn.execute(FINISH, [[s for s, _ in done], [t for _, t in done]])
            rows = conn.execute(CLAIM, [batch, worker]).fetchall()
            conn.commit()  # durable: synchronous_commit as the server has it
            done = []
            if not rows:
                return ran
            for seq, token, payload in rows:
                fn, args, kwargs, _pad = pickle.loads(payload)
                fn(*args, **kwargs)
                done.append((seq, token))
            ran += len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["claim"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--worker", required=True)
    args = parser.parse_args(argv)
    claim(args.dsn, args.batch, args.worker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
