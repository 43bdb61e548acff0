"""Purge given finished jobs of a PostgreSQL queue (the dashboard's "purge" of dead letters):
as :func:`jobq.postgres.operating.purge_batch` does by age, here by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from .jobs import DELETE_WHAT_GONE_LEAVES

_PURGE = (
    "WITH gone AS (DELETE FROM jobq_done WHERE queue = %(q)s AND job_id = ANY(%(ids)s)"
    " AND status = ANY(%(s)s) RETURNING job_id)," + DELETE_WHAT_GONE_LEAVES)


def purge_jobs(conn: psycopg.Connection[Any], queue: str, ids: Sequence[str],
               statuses: list[str]) -> int:
    """In the caller's transaction: delete those of ``ids`` (finished jobs live in jobq_done)
    whose status is one of ``statuses``; how many."""
    row = conn.execute(_PURGE, {"q": queue, "ids": list(ids), "s": statuses}).fetchone()
    return int(row[0]) if row else 0
