"""Purge given finished jobs of a PostgreSQL queue (the dashboard's "purge" of dead letters):
as :func:`jobq.postgres.operating.purge_batch` does by age, here by id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

_PURGE = (
    "WITH gone AS (DELETE FROM jobq_done WHERE queue = %(q)s AND job_id = ANY(%(ids)s)"
    " AND status = ANY(%(s)s) RETURNING job_id),"
    " p AS (DELETE FROM jobq_payloads WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone)),"
    " s AS (DELETE FROM jobq_snapshots WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM gone)),"
    " d AS (DELETE FROM jobq_dependencies WHERE queue = %(q)s"
    " AND child IN (SELECT job_id FROM gone))"
    " SELECT count(*) FROM gone")


def purge_jobs(conn: psycopg.Connection[Any], queue: str, ids: Sequence[str],
               statuses: list[str]) -> int:
    """In the caller's transaction: delete those of ``ids`` (finished jobs live in jobq_done)
    whose status is one of ``statuses``; how many."""
    row = conn.execute(_PURGE, {"q": queue, "ids": list(ids), "s": statuses}).fetchone()
    return int(row[0]) if row else 0
