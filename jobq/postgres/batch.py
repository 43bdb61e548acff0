"""A batch of new jobs COPYed straight into jobq_payloads and jobq_jobs: the fast way in.

Every frame is verified (checksums, signature, size: :func:`jobq.record.scan`) and its
routing fields read (:func:`jobq.job_record.routing`) while the rows are built, except the
frames of a :class:`jobq.batches.Made` batch (``Queue.enqueue_many``'s), which come with the
fields this process made them from: re-reading them cost the client 3.0-4.7 µs of CPU a job
against 1.1 taken from the batch (100,000 jobs), about what the server spends on the job's
row; and a frame is verified anyway where it is read. The rows are sent in PostgreSQL's
binary COPY format, built here with ``struct`` (per row, psycopg's ``write_row`` costs more
than the server's insert). The jobq_jobs rows go first, a chunk at a time, so that the server
inserts them while the next chunk is made (and verified); then the
payload rows, a chunk at a time too. That order leaves the cheaper COPY for last, the one the
client's work cannot overlap: the server's CPU a row was about 3 µs for jobq_payloads and 6 for
jobq_jobs (PostgreSQL 15, 20,000 jobs; payloads first measured no better).

This way has no ``ON CONFLICT``: an id stored already (a producer retrying a commit whose
outcome it did not learn), or twice in the batch, makes a COPY (into jobq_payloads at the
latest) fail with
a unique violation, the transaction is rolled back whole, and the caller stores the batch the
slow way (:mod:`jobq.postgres.append`), which keeps each id's first record. jobq_payloads holds
the record of every job of the queue, finished or not, until purge deletes both, so it is where
a stored id is found.

Binary COPY layout (PostgreSQL's documentation, "COPY", "Binary Format"), big-endian: the
signature, flags and extension length; then per row the number of fields (i16) and per field
its length (i32) and bytes; then -1 (i16).
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

import psycopg

from .. import job_record, record
from ..batches import Made
from ..errors import InvalidArgument
from ..totals import enqueued
from . import totals

SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER: Final = struct.pack(">h", -1)
CHUNK: Final = 1_000  # rows sent at a time: the server inserts them while the next are made
_LEN = struct.Struct(">i")
# ready (bool), priority (int8), run_at (float8), max_attempts (int4); each after its length
_MIDDLE = struct.Struct(">i?iqidii")
_TIMES = struct.Struct(">idid")  # enqueued_at, updated_at
_STATUS = _LEN.pack(6) + b"queued"
_PAYLOAD_PIECES = 5  # pieces of a payload row in _Rows.payloads (6 for a Made batch's)
assert _MIDDLE.size == 37 and _TIMES.size == 24

COPY_PAYLOADS: Final = "COPY jobq_payloads (queue, job_id, frame) FROM STDIN (FORMAT BINARY)"
COPY_JOBS: Final = ("COPY jobq_jobs (queue, job_id, status, ready, priority, run_at,"
                    " max_attempts, task, enqueued_at, updated_at) FROM STDIN (FORMAT BINARY)")
SERVER_NOW: Final = "SELECT extract(epoch FROM clock_timestamp())::float8"


def copy_in(conn: psycopg.Connection[Any], queue: str, batches: Iterable[Sequence[bytes]],
            key: bytes | None, max_body: int) -> None:
    """COPY the frames of ``batches`` (each the pieces of whole job records) in the open
    transaction, each batch sent before the next is taken.

    The frames are verified first, except those of a :class:`jobq.batches.Made` batch, whose
    routing fields come with them: this process made them from those fields, and every frame
    is verified where it is read (a worker's payload_body, verify). InvalidArgument if a frame
    is not valid (the COPY is then abandoned); UniqueViolation if an id is stored already or
    repeated. run_at is clamped as the slow way does, on the server's clock read first.
    """
    found = conn.execute(SERVER_NOW).fetchone()
    now = float(found[0]) if found else 0.0
    q = queue.encode()
    rows = _Rows(struct.pack(">hi", 10, len(q)) + q, struct.pack(">hi", 3, len(q)) + q, now)
    with conn.cursor() as cur:
        with cur.copy(COPY_JOBS) as copy:
            copy.write(SIGNATURE)
            base = 0  # where the batch starts in the whole call, for errors
            for pieces in batches:
                if isinstance(pieces, Made):
                    copy.write(rows.add_made(pieces))
                    base += sum(map(len, pieces))
                    continue
                data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                for piece in rows.add(data, base, key, max_body):
                    copy.write(piece)
                base += len(data)
            copy.write(TRAILER)
        with cur.copy(COPY_PAYLOADS) as copy:  # joined a chunk at a time, as the server takes them
            copy.write(SIGNATURE)
            payloads = rows.payloads
            for first in range(0, len(payloads), _PAYLOAD_PIECES * CHUNK):
                copy.write(b"".join(payloads[first:first + _PAYLOAD_PIECES * CHUNK]))
            copy.write(TRAILER)
        totals.add(conn, queue, enqueued(cur.rowcount))  # the rows COPY stored


class _Rows:
    """The rows of jobq_jobs of each chunk, and the payload rows of them all so far."""

    def __init__(self, job_head: bytes, payload_head: bytes, now: float) -> None:
        self.job_head, self.payload_head, self.now = job_head, payload_head, now
        self.payloads: list[Any] = []

    def tail(self, priority: int, run_at: float, created: float, max_attempts: int,
             task: bytes) -> bytes:
        """The columns of a jobq_jobs row after the id (status to updated_at), packed."""
        now = self.now
        due = min(run_at, now + max(0.0, run_at - created))
        return b"".join((_STATUS, _MIDDLE.pack(1, due <= now, 8, priority, 8, due, 4,
                                               max_attempts),
                         _LEN.pack(len(task)), task, _TIMES.pack(8, created, 8, created)))

    def add_made(self, made: Made) -> bytes:
        """The jobq_jobs rows of a Made batch, from the fields it was made from; keeps their
        payload rows (the frame as its header and body pieces)."""
        if len(made) != 2 * len(made.ids):  # zip would drop the jobs past the shorter
            raise InvalidArgument(f"a made batch of {len(made)} pieces has {len(made.ids)} ids:"
                                  " a header and a body per job")
        shared = made.shared
        tail = self.tail(shared.priority, shared.run_at, shared.created_at, shared.max_attempts,
                         shared.task.encode())
        # Each piece of the rows in its column of a list, a column at once (slice assignments
        # and map, C loops: only the ids' encoding is a comprehension), then read across.
        n, ln = len(made.ids), _LEN.pack
        ids = [i.encode() for i in made.ids]
        id_lens = list(map(ln, map(len, ids)))
        heads, bodies = made[0::2], made[1::2]
        rows: list[bytes] = [b""] * (6 * n)
        rows[0::6] = [self.payload_head] * n
        rows[1::6] = id_lens
        rows[2::6] = ids
        rows[3::6] = map(ln, map(operator.add, map(len, heads), map(len, bodies)))
        rows[4::6] = heads
        rows[5::6] = bodies
        self.payloads += rows
        rows = [b""] * (4 * n)
        rows[0::4] = [self.job_head] * n
        rows[1::4] = id_lens
        rows[2::4] = ids
        rows[3::4] = [tail] * n
        return b"".join(rows)

    def add(self, data: bytes, base: int, key: bytes | None, max_body: int) -> Iterator[bytes]:
        """The jobq_jobs rows of the frames of ``data``, verified, CHUNK rows at a time; keeps
        their payload rows."""
        job_head, payload_head, payloads, ln = (self.job_head, self.payload_head, self.payloads,
                                                _LEN.pack)
        view = memoryview(data)
        rows: list[Any] = []
        verified = 0  # bytes of data verified: where a bad frame starts
        # The jobs of one enqueue_many share their task, options and times: the columns after
        # the id (status to updated_at) are packed once, and again only when they change.
        fixed: tuple[int, float, float, int, bytes] | None = None
        tail = b""
        try:
            for pos, start, end in record.scan(data, key=key, max_body=max_body):
                priority, run_at, created, max_attempts, job_id, task = job_record.routing(
                    data, start, end)
                if fixed != (priority, run_at, created, max_attempts, task):
                    fixed = (priority, run_at, created, max_attempts, task)
                    tail = self.tail(*fixed)
                id_len = ln(len(job_id))
                rows += (job_head, id_len, job_id, tail)
                payloads += (payload_head, id_len, job_id, ln(end - pos), view[pos:end])
                verified = end
                if len(rows) >= 4 * CHUNK:  # (4 pieces a row)
                    yield b"".join(rows)
                    rows = []
        except (record.Damaged, record.Incomplete) as exc:
            raise InvalidArgument(f"not a whole, valid job record at byte {base + verified} of"
                                  f" the batch: {type(exc).__name__} {exc}") from exc
        yield b"".join(rows)
