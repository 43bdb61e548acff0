"""Result retention in PostgreSQL: ``jobq_retention`` holds the ttls of jobs enqueued with one
(:mod:`jobq.retention`); a finished job's expiry is ``jobq_done.expires_at``, computed by the
statement that moves it there (:data:`jobq.postgres.jobs._WRITE`) and gone with the row if it is
retried. Workers' upkeep seeks the partial index ``jobq_done_expires`` and deletes a batch of
jobs past it in one short transaction, with their payloads, snapshots, parents lists and ttls,
as ``jobq purge`` does (:func:`jobq.postgres.operating.purge_batch`); the server's autovacuum
makes the space reusable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from ..retention import PARENT_GRACE
from .jobs import DELETE_WHAT_GONE_LEAVES, NOW


def keep(conn: psycopg.Connection[Any], queue: str, job_ids: Sequence[str],
         result_ttl: float | None, failure_ttl: float | None) -> None:
    """Inside a transaction: record the ttls of ``job_ids``; those already ended (rows written
    after their records: enqueue_many) expire from their end time."""
    conn.execute(
        "INSERT INTO jobq_retention (queue, job_id, result_ttl, failure_ttl)"
        " SELECT %(q)s, id, %(r)s, %(f)s FROM unnest(%(ids)s::text[]) AS v(id)"
        " ON CONFLICT (queue, job_id) DO UPDATE SET result_ttl = EXCLUDED.result_ttl,"
        " failure_ttl = EXCLUDED.failure_ttl",
        {"q": queue, "ids": list(job_ids), "r": result_ttl, "f": failure_ttl})
    conn.execute(
        "UPDATE jobq_done SET expires_at = updated_at + CASE WHEN status = 'dead'"
        " THEN %(f)s::float8 ELSE %(r)s::float8 END"
        " WHERE queue = %(q)s AND job_id = ANY(%(ids)s::text[])",
        {"q": queue, "ids": list(job_ids), "r": result_ttl, "f": failure_ttl})


# The expired jobs of the batch, locked (SKIP LOCKED: two workers take different ones); those
# with a dependent still in jobq_jobs (not ended) are kept PARENT_GRACE longer, the rest go.
_EXPIRE = (
    f"WITH now AS (SELECT {NOW} AS t),"
    " due AS (SELECT d.job_id, EXISTS (SELECT 1 FROM jobq_dependencies p JOIN jobq_jobs c"
    " ON c.queue = p.queue AND c.job_id = p.child WHERE p.queue = d.queue"
    " AND p.parent = d.job_id) AS parent"
    " FROM jobq_done d WHERE d.queue = %(q)s AND d.expires_at IS NOT NULL"
    " AND d.expires_at <= (SELECT t FROM now) ORDER BY d.expires_at LIMIT %(n)s"
    " FOR UPDATE SKIP LOCKED),"
    " later AS (UPDATE jobq_done SET expires_at = (SELECT t FROM now) + %(grace)s"
    " WHERE queue = %(q)s AND job_id IN (SELECT job_id FROM due WHERE parent)),"
    " gone AS (DELETE FROM jobq_done WHERE queue = %(q)s"
    " AND job_id IN (SELECT job_id FROM due WHERE NOT parent) RETURNING job_id),"
    + DELETE_WHAT_GONE_LEAVES)


def expire(conn: psycopg.Connection[Any], queue: str, limit: int) -> int:
    """Inside a transaction: delete up to ``limit`` jobs past their expiry; how many."""
    row = conn.execute(_EXPIRE, {"q": queue, "n": limit, "grace": PARENT_GRACE}).fetchone()
    return int(row[0]) if row else 0
