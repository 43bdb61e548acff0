"""A job whose log record cannot be read: its bytes are copied aside once, and the job says where.

A record that fails its checksum or signature, or stops short, fails the same way on every read:
retrying its job would only spend the attempts and wait out the backoff, and once the job had
finished a compaction would drop the bytes. So whoever finds such a record behind a job (a worker
loading the payload, ``jobq show``) copies the damaged range aside to the quarantine directory and
records it in the quarantine table, as indexing does with the damage it meets
(:func:`jobq.local.index.quarantine`); finding it again copies nothing. A worker then ends the job dead
at once, its reason from :func:`reason` (:func:`jobq.transitions.damaged`).
"""

from __future__ import annotations

import time

from . import index
from ..errors import CorruptRecord, DamagedRecord, StorageError
from .log import Damage, Entry, Log, Position, Tail
from .store import Store

_SAVED_TO = "SELECT saved_to FROM quarantine WHERE segment = ? AND offset = ?"


def set_aside(store: Store, log_: Log, pos: Position, cause: DamagedRecord) -> str:
    """Copy the damaged record at ``pos`` to the quarantine directory, unless that was done
    before; return the copy's path. StorageError if it cannot be copied."""
    damage = damaged_range(log_, pos, cause.reason)  # read before the write lock is taken
    with store.transaction() as conn:  # one process copies; the others find its row
        row = conn.execute(_SAVED_TO, pos).fetchone()
        if row is None:
            index.quarantine(conn, log_, damage, time.time())
            row = conn.execute(_SAVED_TO, pos).fetchone()
    return row[0]


def damaged_range(log_: Log, pos: Position, reason: str) -> Damage:
    """The bytes that reading the log skips at ``pos``: up to the next genuine record, or to the
    end of the records (none if the segment ends before ``pos``)."""
    try:
        first = next(iter(log_.scan(pos)), None)
    except CorruptRecord:  # the segment ends before pos: nothing there to copy
        return Damage(pos, pos.offset, reason)
    if isinstance(first, Damage) and first.pos == pos:
        return Damage(pos, first.end, reason)
    if isinstance(first, Tail) and first.pos == pos:
        end = log_.end()
        return Damage(pos, end.offset if end.segment == pos.segment else pos.offset, reason)
    if isinstance(first, Entry) and first.pos == pos:
        # Read as damaged a moment ago, whole now: not damage (the caller fails the attempt).
        raise StorageError(f"the record at {log_.path(pos.segment)}:{pos.offset} failed to read,"
                           " then read whole", path=log_.path(pos.segment), offset=pos.offset)
    return Damage(pos, pos.offset, reason)


def copies(store: Store) -> dict[Position, str]:
    """Where each quarantined range was copied to, by the position it starts at."""
    return {Position(r["segment"], r["offset"]): r["saved_to"] for r in store.quarantined()}
