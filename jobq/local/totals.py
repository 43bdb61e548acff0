"""The running totals of a queue directory (:mod:`jobq.totals`): one small table in the state
database, added to in the transaction that records a batch (one statement a batch).

The index is a cache of the log: when it is rebuilt, the totals are counted again from the jobs
it finds (every job enqueued, succeeded, dead), so they can go down then; Prometheus reads that
as a counter reset. The same count seeds the table of a store made before it (schema 5).
"""

from __future__ import annotations

import sqlite3
from collections import Counter

from ..totals import Key

SCHEMA = ("CREATE TABLE IF NOT EXISTS job_totals (name TEXT NOT NULL, task TEXT NOT NULL,"
          " n REAL NOT NULL, PRIMARY KEY (name, task)) WITHOUT ROWID")


def add(conn: sqlite3.Connection, delta: Counter[Key]) -> None:
    """Inside the write transaction that recorded what ``delta`` counts."""
    if delta:
        conn.executemany("INSERT INTO job_totals (name, task, n) VALUES (?, ?, ?)"
                         " ON CONFLICT (name, task) DO UPDATE SET n = n + excluded.n",
                         [(name, task, n) for (name, task), n in delta.items()])


def read(conn: sqlite3.Connection) -> dict[Key, float]:
    return {(name, task): n for name, task, n in conn.execute(
        "SELECT name, task, n FROM job_totals")}


def create(conn: sqlite3.Connection) -> None:
    """Inside the schema's write transaction: the table, counted if it is new."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_totals'").fetchone() is None:
        conn.execute(SCHEMA)
        recount(conn)


def recount(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: the totals counted from the jobs indexed (a new index)."""
    conn.execute("DELETE FROM job_totals")
    conn.execute("INSERT INTO job_totals (name, task, n) SELECT 'enqueued', '', COUNT(*)"
                 " FROM jobs")
    conn.execute("INSERT INTO job_totals (name, task, n) SELECT CASE status WHEN 'dead'"
                 " THEN 'failed' ELSE status END, '', COUNT(*) FROM jobs"
                 " WHERE status IN ('succeeded', 'dead') GROUP BY status")
