"""Job snapshots in batches: the ``jobs`` row holds a job's scalars, the shelf its objects.

Claiming a job changes only its row (status, attempts, claim token, start time), so a worker can
claim a hundred jobs with two statements and no pickling. Whatever changes a job's objects (an
ended attempt, a checkpoint, an operator's retry) writes its whole snapshot. Reading a job lays the
row over its snapshot: the row wins for the fields it holds, so a snapshot written before the last
claim is never read stale.

A job just indexed gets a marker (a pickled ``None``) instead of a snapshot: one small row, but
enough for a rebuild after the index tables are lost to tell a job that was indexed (and is still
waiting) from one that was purged. The row's ``snap`` column says what the shelf holds, so a
fresh job is never looked up in the shelf at all::

    snap  shelf value (pickled, signed when the queue has a key)
    0     None: the marker of a job indexed, no attempt ended, never checkpointed
    1     the whole JobState
    2     a plain success (store schema 7, :func:`jobq.state.plain_success`): the tuple
          ("succeeded", attempts, progress, run_at, cancel_requested, started_at, finished_at)

A plain success is its row over a fresh state, ``finished_at`` its ``updated_at``: the settle of a
no-op job pickles seven scalars instead of the whole state (issue 19). The tuple is there for a
rebuild of lost index tables, which reads the job's row fields back from it (so the job neither
runs again nor loses its times), and it stays a plain pickle, readable by a stock ``shelve``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..codec import MARKER as UNSIGNED_MARKER
from ..errors import CorruptRecord, LoadError, StorageError
from . import bulk
from .shelf import StateShelf
from ..state import JobState, Status, overlay, plain_success

# The row columns a JobState is built from, in this order (see overlay()).
ROW = ("job_id, task, status, attempts, progress, run_at, cancel_requested, enqueued_at,"
       " updated_at, started_at, snap")
CHUNK = 500  # SQLite's limit on bound parameters is 999 in older builds
MARKER, SNAPSHOT, PLAIN = 0, 1, 2  # the ``snap`` column: what the shelf holds (see above)
PLAIN_TAG = "succeeded"
_PLAIN_SIZE = 7

_PUT = "REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), ?)"
_UPDATE = "UPDATE Dict SET value = ? WHERE key = CAST(? AS BLOB)"
# The markers of new jobs, their keys bound as text: Python's sqlite3 binds str, int and float
# parameters as they are, but looks for an adapter for bytes, which costs ~3,000 instructions a
# parameter (issue 19: half of indexing a job's marker). The cast stores the same bytes
# (the UTF-8 of the id), and an unsigned marker is the same for every job: a literal.
_PUT_MARKERS = "REPLACE INTO Dict (key, value)"
_MARKER_KEYED = "(CAST(? AS BLOB), ?)"
# Snapshots written over the rows already there (see store_many), keys bound as text likewise.
_STORE = "INSERT INTO Dict (key, value)"
_UPSERT = " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
_MARKER = f"(CAST(? AS BLOB), X'{UNSIGNED_MARKER.hex()}')"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def marks(count: int) -> str:
    """``?, ?, ...`` for an ``IN`` list of ``count`` values."""
    return ", ".join("?" * count)


def load_many(conn: sqlite3.Connection, shelf: StateShelf, job_ids: Sequence[str]
              ) -> dict[str, JobState]:
    """The snapshots of ``job_ids`` that exist (markers and missing ones are left out; a plain
    success comes back as its state, to be laid under its row).

    Raises what the shelf raises for a snapshot that cannot be loaded (LoadError, CorruptRecord,
    SchemaVersionError...).
    """
    found: dict[str, JobState] = {}
    for part in chunks(job_ids):
        rows = conn.execute("SELECT key, value FROM Dict WHERE key IN"
                            f" ({', '.join(['CAST(? AS BLOB)'] * len(part))})",
                            part).fetchall()  # keys bound as text: see _PUT_MARKERS
        for raw_key, raw in rows:
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            state = shelf.decode(key, raw)
            if type(state) is tuple:
                state = from_plain(key, "", 0.0, state)
            if state is not None:
                found[key] = state
    return found


def states(conn: sqlite3.Connection, shelf: StateShelf, rows: Sequence[Sequence[Any]]
           ) -> list[JobState]:
    """The states of ``rows`` (each in :data:`ROW` order), loading only whole snapshots."""
    with_snapshot = [row[0] for row in rows if row[10] == SNAPSHOT]
    loaded = load_many(conn, shelf, with_snapshot) if with_snapshot else {}
    made = [overlay(row, loaded.get(row[0])) for row in rows]
    for row, state in zip(rows, made):
        if row[10] == PLAIN:
            state.finished_at = state.updated_at
    return made


def snap_of(state: JobState, now: float) -> int:
    """The ``snap`` of ``state`` written at ``now``: PLAIN or SNAPSHOT."""
    return PLAIN if plain_success(state, now) else SNAPSHOT


def kept(state: JobState, snap: int) -> Any:
    """What the shelf keeps of ``state`` stored as ``snap`` (see the module docstring)."""
    if snap == PLAIN:
        return (PLAIN_TAG, state.attempts, state.progress, state.run_at, state.cancel_requested,
                state.started_at, state.finished_at)
    return state


def is_plain(value: Any) -> bool:
    """Is a value read from the shelf a plain success's tuple (see the module docstring)?"""
    return type(value) is tuple and len(value) == _PLAIN_SIZE and value[0] == PLAIN_TAG


def from_plain(job_id: str, task: str, enqueued_at: float, value: Any) -> JobState:
    """The state a plain success's tuple stands for; CorruptRecord if it is not one."""
    if not is_plain(value):
        raise CorruptRecord(f"state snapshot {job_id!r} holds a {type(value).__name__}, neither"
                            " a JobState nor a plain success", job_id=job_id)
    _, attempts, progress, run_at, cancel, started_at, finished_at = value
    numbers = (progress, run_at, started_at, finished_at)
    if type(attempts) is not int or type(cancel) is not bool \
            or not all(type(n) in (int, float) for n in numbers):
        raise CorruptRecord(f"state snapshot {job_id!r}: a plain success with fields of the"
                            " wrong types", job_id=job_id)
    return JobState(job_id=job_id, task=task, status=Status.SUCCEEDED, attempts=attempts,
                    progress=progress, run_at=run_at, cancel_requested=cancel,
                    enqueued_at=enqueued_at, started_at=started_at, finished_at=finished_at,
                    updated_at=finished_at)


@contextmanager
def loading() -> Iterator[None]:
    """A snapshot a write needs but cannot load is a StorageError naming the job."""
    try:
        yield
    except (LoadError, CorruptRecord) as exc:
        job_id = getattr(exc, "job_id", None)
        raise StorageError(f"state snapshot of job {job_id!r} cannot be loaded: {exc}",
                           job_id=job_id) from exc


def store_many(conn: sqlite3.Connection, shelf: StateShelf,
               new: Iterable[tuple[JobState, int, bytes | None]]) -> None:
    """Write snapshots, each state given with its ``snap`` (:func:`snap_of`) and its encoding if
    already made (else None). The caller sets ``snap`` in the same rows' own update.

    Updated in place, as :func:`store_one` does: every indexed job has a row in ``Dict`` (its
    marker at least), and the upsert's UPDATE leaves that row and its key's index entry where
    they are, where a REPLACE deletes both and inserts them again at the table's end (issue 19:
    a worker settling a batch wrote three pages of ``Dict`` per job); a missing row is inserted.
    A hundred rows a statement (:mod:`jobq.local.bulk`), keys bound as text (see _PUT_MARKERS)
    and values as bytearrays (the same blob, bound without the adapter lookup that bytes pay:
    ~2K instructions a job less, the copy included).
    """
    rows = [(s.job_id, bytearray(shelf.encode(s.job_id, kept(s, snap)) if b is None else b))
            for s, snap, b in new]
    bulk.insert(conn, _STORE, _MARKER_KEYED, rows, _UPSERT)


def store_one(conn: sqlite3.Connection, shelf: StateShelf, state: JobState) -> None:
    """Write one job's snapshot in place: an UPDATE keeps the row and its key's index entry
    where they are, so a checkpoint's commit writes one page of ``Dict``, not three."""
    key, value = state.job_id, shelf.encode(state.job_id, state)
    if not conn.execute(_UPDATE, (value, key)).rowcount:
        conn.execute(_PUT, (key, value))


def mark_indexed(conn: sqlite3.Connection, shelf: StateShelf, job_ids: Iterable[str]) -> None:
    """Give newly indexed jobs their marker (see the module docstring)."""
    if shelf.signed:
        bulk.insert(conn, _PUT_MARKERS, _MARKER_KEYED,
                    [(j, shelf.encode_marker(j)) for j in job_ids])
    else:
        bulk.insert(conn, _PUT_MARKERS, _MARKER, [(j,) for j in job_ids])
