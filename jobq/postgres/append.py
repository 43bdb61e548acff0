"""Storing new jobs: framed records in, one statement's worth of rows out, one commit.

The records arrive framed and (with a key) signed by the producer (:mod:`jobq.record`); each is
verified here once (but those ``Queue.enqueue_many`` made in this process: see
:mod:`jobq.postgres.batch`), then stored as it is in ``jobq_payloads``, with its routing fields
(:func:`jobq.job_record.decode_meta`, no unpickling) in a new ``jobq_jobs`` row. An id already
stored keeps its first record (``ON CONFLICT DO NOTHING`` on ``jobq_payloads``, which holds
every job's record, finished or not, until purge), so a producer may retry a commit whose
outcome it did not learn.

One job is one statement with scalar parameters. A batch is COPYed straight into the two
tables (:mod:`jobq.postgres.batch`); only when that finds an id stored already (or repeated in
the batch) is it stored the slow way: COPYed (binary) into a temporary table of the session and
inserted from there with ``ON CONFLICT DO NOTHING``, in a transaction of its own (adapting
arrays of thousands of values costs the client more than the server's whole insert).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg

from .. import job_record, record
from ..errors import InvalidArgument
from .batch import copy_in
from . import totals

# run_at clamped as jobq.local.index.run_at_of does, on the server's clock. The payload row goes in
# first and the job row only for the ids it was new for: jobq_payloads holds every stored id,
# finished or not, until purge. Inserting the job row first lost that race: an append waiting on
# the row of a job that a worker was moving to jobq_done (not yet visible there) inserted the id
# again once the move committed, and the job ran twice.
_INSERT = (
    "WITH n AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS now),"
    " w AS (SELECT v.*, LEAST(v.run_at, n.now + GREATEST(0, v.run_at - v.created_at)) AS due,"
    " n.now FROM {source} CROSS JOIN n),"
    " fresh AS (INSERT INTO jobq_payloads (queue, job_id, frame)"
    " SELECT %(q)s, w.job_id, w.frame FROM w ORDER BY w.ord"
    " ON CONFLICT (queue, job_id) DO NOTHING RETURNING job_id)"
    ", ins AS (INSERT INTO jobq_jobs (queue, job_id, status, ready, priority, run_at,"
    " max_attempts, task, enqueued_at, updated_at)"
    " SELECT %(q)s, w.job_id, 'queued', w.due <= w.now, w.priority, w.due, w.max_attempts,"
    " w.task, w.created_at, w.created_at FROM w JOIN fresh ON fresh.job_id = w.job_id"
    " ORDER BY w.ord ON CONFLICT (queue, job_id) DO NOTHING RETURNING 1) "
    + totals.ENQUEUED.replace("{", "{{").replace("}", "}}"))
_ONE = _INSERT.format(source=(
    "(SELECT 1 AS ord, %(id)s::text AS job_id, %(task)s::text AS task,"
    " %(prio)s::bigint AS priority, %(run)s::float8 AS run_at, %(created)s::float8 AS created_at,"
    " %(max)s::int AS max_attempts, %(frame)s::bytea AS frame) v"))
_MANY = _INSERT.format(source="jobq_incoming v")
_INCOMING = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS jobq_incoming (ord int, job_id text COLLATE \"C\","
    " task text, priority bigint, run_at float8, created_at float8, max_attempts int,"
    " frame bytea) ON COMMIT DELETE ROWS")
_COPY = ("COPY jobq_incoming (ord, job_id, task, priority, run_at, created_at, max_attempts,"
         " frame) FROM STDIN (FORMAT BINARY)")
_TYPES = ["int4", "text", "text", "int8", "float8", "float8", "int4", "bytea"]


def split(frames: Sequence[bytes], key: bytes | None, max_body: int
          ) -> list[tuple[job_record.JobMeta, bytes]]:
    """Each verified frame with its routing fields, the first of each id only."""
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    found: dict[str, tuple[job_record.JobMeta, bytes]] = {}
    pos = 0
    while pos < len(data):
        try:
            frame = record.decode(data, pos, key=key, max_body=max_body)
        except (record.Damaged, record.Incomplete) as exc:
            raise InvalidArgument(f"not a whole, valid job record at byte {pos} of the batch:"
                                  f" {type(exc).__name__} {exc}") from exc
        meta, _ = job_record.decode_meta(frame.body)
        if meta.job_id not in found:
            found[meta.job_id] = (meta, data[pos:pos + frame.size])
        pos += frame.size
    return list(found.values())


def _joined(pieces: Sequence[bytes]) -> bytes:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _one_record(pieces: Sequence[bytes], max_body: int) -> bool:
    """Whether the pieces are one whole record, read from its header alone: a batch of several
    is COPYed as soon as it is made, while the next one is made (waiting for a second batch to
    tell kept the server idle for the making of two)."""
    head = pieces[0] if len(pieces[0]) >= record.HEADER_SIZE else _joined(pieces)
    return record.frame_size(head, 0, max_body=max_body) == sum(map(len, pieces))


def _keeping(batches: Iterator[Sequence[bytes]], kept: list[Sequence[bytes]]
             ) -> Iterator[Sequence[bytes]]:
    for pieces in batches:
        kept.append(pieces)
        yield pieces


class Appender:
    """Stores jobs on one session (which keeps its temporary table between batches)."""

    def __init__(self, queue: str, key: bytes | None, max_body: int) -> None:
        self._queue = queue
        self._key = key
        self._max_body = max_body
        self._session: object | None = None  # the connection whose session has jobq_incoming

    def append(self, conn: psycopg.Connection[Any],
               batches: Iterator[tuple[Sequence[bytes], int]]) -> None:
        """Store the records of ``batches`` (jobq.engine.Engine.append_batches), each id once,
        in one transaction (one commit)."""
        first = next(batches)[0]
        rest: Iterator[tuple[Sequence[bytes], int]] = batches
        if _one_record(first, self._max_body):  # only then is the next batch needed first
            second = next(batches, None)
            if second is None:
                jobs = split([_joined(first)], self._key, self._max_body)  # one statement
                if jobs:
                    self.store(conn, self._queue, jobs)
                return
            rest = itertools.chain([second], batches)
        kept: list[Sequence[bytes]] = []  # for the slow way
        pending = _keeping(itertools.chain([first], (p for p, _ in rest)), kept)
        try:
            with conn.transaction():
                copy_in(conn, self._queue, pending, self._key, self._max_body)
            return
        except psycopg.errors.UniqueViolation:
            # Rolled back whole: an id stored already, or twice in the batch. The slow way
            # needs every batch (the server may have said so before the last was made).
            for _ in pending:
                pass
        jobs = split([piece for pieces in kept for piece in pieces], self._key, self._max_body)
        if jobs:
            self.store(conn, self._queue, jobs)

    def store(self, conn: psycopg.Connection[Any], queue: str,
              jobs: list[tuple[job_record.JobMeta, bytes]]) -> None:
        """Store verified jobs with ``ON CONFLICT DO NOTHING``: the one-job and retry way."""
        if len(jobs) == 1:
            meta, frame = jobs[0]
            conn.execute(_ONE, {"q": queue, "id": meta.job_id, "task": meta.task,
                                "prio": meta.priority, "run": meta.run_at,
                                "created": meta.created_at, "max": meta.max_attempts,
                                "frame": frame}, prepare=True)
            return
        with conn.transaction():  # a rollback takes back a table created in it too
            if self._session is not conn:
                conn.execute(_INCOMING)
            with conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    copy.set_types(_TYPES)
                    for i, (m, frame) in enumerate(jobs):
                        copy.write_row((i, m.job_id, m.task, m.priority, m.run_at,
                                        m.created_at, m.max_attempts, frame))
                cur.execute(_MANY, {"q": queue}, prepare=True)
        self._session = conn
