"""Job snapshots in batches: the ``jobs`` row holds a job's scalars, the shelf its objects.

Claiming a job changes only its row (status, attempts, claim token, start time), so a worker can
claim a hundred jobs with two statements and no pickling. Whatever changes a job's objects (an
ended attempt, a checkpoint, an operator's retry) writes its whole snapshot. Reading a job lays the
row over its snapshot: the row wins for the fields it holds, so a snapshot written before the last
claim is never read stale.

A job just indexed gets a marker (a pickled ``None``) instead of a snapshot: one small row, but
enough for a rebuild after the index tables are lost to tell a job that was indexed (and is still
waiting) from one that was purged. The row's ``snap`` column says whether a real snapshot exists,
so a fresh job is never looked up in the shelf at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..codec import MARKER
from ..errors import CorruptRecord, LoadError, StorageError
from . import bulk
from .shelf import StateShelf
from ..state import JobState, overlay

# The row columns a JobState is built from, in this order (see overlay()).
ROW = ("job_id, task, status, attempts, progress, run_at, cancel_requested, enqueued_at,"
       " updated_at, started_at, snap")
# The same, for ``RETURNING``: SQLite returns a REAL column's whole-number value there as an
# integer (1000 for 1000.0), which would then be pickled as one.
_REAL = frozenset({"progress", "run_at", "enqueued_at", "updated_at", "started_at"})
ROW_RETURNED = ", ".join(f"CAST({column} AS REAL)" if column in _REAL else column
                         for column in ROW.split(", "))
CHUNK = 500  # SQLite's limit on bound parameters is 999 in older builds

_PUT = "REPLACE INTO Dict (key, value) VALUES (?, ?)"
_UPDATE = "UPDATE Dict SET value = ? WHERE key = ?"
# The markers of new jobs, their keys bound as text: Python's sqlite3 binds str, int and float
# parameters as they are, but looks for an adapter for bytes, which costs ~3,000 instructions a
# parameter (issue 19: half of indexing a job's marker). The cast stores the same bytes
# (the UTF-8 of the id), and an unsigned marker is the same for every job: a literal.
_PUT_MARKERS = "REPLACE INTO Dict (key, value)"
_MARKER_KEYED = "(CAST(? AS BLOB), ?)"
_MARKER = f"(CAST(? AS BLOB), X'{MARKER.hex()}')"


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def marks(count: int) -> str:
    """``?, ?, ...`` for an ``IN`` list of ``count`` values."""
    return ", ".join("?" * count)


def load_many(conn: sqlite3.Connection, shelf: StateShelf, job_ids: Sequence[str]
              ) -> dict[str, JobState]:
    """The snapshots of ``job_ids`` that exist (markers and missing ones are left out).

    Raises what the shelf raises for a snapshot that cannot be loaded (LoadError, CorruptRecord,
    SchemaVersionError...).
    """
    found: dict[str, JobState] = {}
    for part in chunks(job_ids):
        rows = conn.execute(f"SELECT key, value FROM Dict WHERE key IN ({marks(len(part))})",
                            [j.encode() for j in part]).fetchall()
        for raw_key, raw in rows:
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            state = shelf.decode(key, raw)
            if state is not None:
                found[key] = state
    return found


def states(conn: sqlite3.Connection, shelf: StateShelf, rows: Sequence[Sequence[Any]]
           ) -> list[JobState]:
    """The states of ``rows`` (each in :data:`ROW` order), loading only real snapshots."""
    with_snapshot = [row[0] for row in rows if row[10]]
    loaded = load_many(conn, shelf, with_snapshot) if with_snapshot else {}
    return [overlay(row, loaded.get(row[0])) for row in rows]


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
               new: Iterable[tuple[JobState, bytes | None]]) -> None:
    """Write whole snapshots, each given with its encoding if already made (else None). The
    caller sets ``snap = 1`` in the same rows' own update.

    Updated in place, as :func:`store_one` does: every indexed job has a row in ``Dict`` (its
    marker at least), and an UPDATE leaves that row and its key's index entry where they are,
    where a REPLACE deletes both and inserts them again at the table's end (issue 19: a worker
    settling a batch wrote three pages of ``Dict`` per job). Should a row be missing, the batch is
    written again with REPLACE, which writes the updated rows once more, the same bytes.
    """
    values = [(shelf.encode(s.job_id, s) if b is None else b, s.job_id.encode()) for s, b in new]
    if conn.executemany(_UPDATE, values).rowcount != len(values):
        conn.executemany(_PUT, [(key, value) for value, key in values])


def store_one(conn: sqlite3.Connection, shelf: StateShelf, state: JobState) -> None:
    """Write one job's snapshot in place: an UPDATE keeps the row and its key's index entry
    where they are, so a checkpoint's commit writes one page of ``Dict``, not three."""
    key, value = state.job_id.encode(), shelf.encode(state.job_id, state)
    if not conn.execute(_UPDATE, (value, key)).rowcount:
        conn.execute(_PUT, (key, value))


def mark_indexed(conn: sqlite3.Connection, shelf: StateShelf, job_ids: Iterable[str]) -> None:
    """Give newly indexed jobs their marker (see the module docstring)."""
    if shelf.signed:
        bulk.insert(conn, _PUT_MARKERS, _MARKER_KEYED,
                    [(j, shelf.encode_marker(j)) for j in job_ids])
    else:
        bulk.insert(conn, _PUT_MARKERS, _MARKER, [(j,) for j in job_ids])
