"""What operators do to jobs: cancel, retry (requeue), purge; and the cancel generation.

A running job asked to cancel keeps running until its worker sees the flag: the flag is in its
row, and the queue's number in ``jobq_cancels`` is bumped in the same transaction, so a worker
child that sees the number change and then reads the cancelled claims finds this one.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .. import transitions
from ..codec import SnapshotCodec
from ..state import Status
from . import dependencies, groups, jobs
from .settle import server_now

PURGE_BATCH = 5_000
CANCEL_PAYLOAD = "cancel"  # on the queue's wake-up channel: a running job was asked to cancel


def cancel(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, job_id: str,
           notify: str | None = None) -> bool:
    """Inside the caller's transaction: cancel a waiting job now, or ask a running one to stop
    (a prefetched one is given back cancelled by its worker). False if already finished.

    Cancelling a waiting job whose dependents it makes due, it NOTIFYs ``notify`` (if given)
    as an enqueue would. Asking a running job, it NOTIFYs ``notify`` with the payload ``cancel``,
    delivered at the commit: the supervisors listening look at their running jobs at once. Inside
    the transaction, so taking the commit-order lock (see :mod:`jobq.postgres.wakeups`): cancels
    are rare."""
    now = server_now(conn)
    state, _, finished = jobs.load(conn, codec, queue, job_id, for_update=True)
    if finished:
        return False
    if state.status is Status.RUNNING:  # the flag lives in the row: no snapshot to rewrite
        conn.execute("UPDATE jobq_jobs SET cancel_requested = true WHERE queue = %s"
                     " AND job_id = %s", (queue, job_id))
        conn.execute("UPDATE jobq_cancels SET generation = generation + 1 WHERE queue = %s",
                     (queue,))
        if notify is not None:
            conn.execute("SELECT pg_notify(%s, %s)", (notify, CANCEL_PAYLOAD))
        return True
    if dependencies.write(conn, codec, queue, [transitions.cancelled(state, now)],
                          now).released and notify is not None:
        conn.execute("SELECT pg_notify(%s, '')", (notify,))  # dependents it made due
    return True


def requeue(conn: psycopg.Connection[Any], codec: SnapshotCodec, queue: str, job_id: str) -> bool:
    """Inside the caller's transaction: bring a dead or cancelled job back (waiting, if some
    of its parents have not ended). False otherwise."""
    now = server_now(conn)
    state, _, finished = jobs.load(conn, codec, queue, job_id, for_update=True)
    if not finished or not transitions.can_requeue(state):
        return False
    state = transitions.requeued(state, now)
    if dependencies.waits_again(conn, queue, job_id):
        state = transitions.waiting(state, now)
    jobs.unfinish(conn, codec, queue, state, now)
    groups.reopened(conn, queue, [job_id])
    return True


def purge_batch(conn: psycopg.Connection[Any], queue: str, statuses: list[str],
                updated_before: float) -> int:
    """Delete up to PURGE_BATCH finished jobs (rows, payloads, snapshots, the list of their
    parents, ttls); how many."""
    row = conn.execute(
        "WITH gone AS (DELETE FROM jobq_done WHERE queue = %(q)s AND job_id IN"
        " (SELECT job_id FROM jobq_done WHERE queue = %(q)s AND status = ANY(%(s)s)"
        f" AND updated_at < %(t)s LIMIT {PURGE_BATCH}) RETURNING job_id),"
        + jobs.DELETE_WHAT_GONE_LEAVES, {"q": queue, "s": statuses, "t": updated_before}
    ).fetchone()
    return int(row[0]) if row else 0
