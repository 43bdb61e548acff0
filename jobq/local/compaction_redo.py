"""A compaction that died after moving seqs (its step (b), see :mod:`jobq.local.compaction`)
is finished by whoever next holds the write lock: the marker it left, the copy it renames, and
the lock that keeps two compactions (or a compaction and a backup) apart.

Apart from compaction itself because the state store and every open need it, and compaction
needs them.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

from . import durable, permissions
from .log import Log
from .._logging import get_logger

if TYPE_CHECKING:
    import filelock  # imported where used: only compaction needs it, not every start-up

log = get_logger(__name__)

MARKER = "compacting"  # meta: the segment a compaction is renaming


def redo_interrupted(conn: sqlite3.Connection, log_: Log) -> bool:
    """In a write transaction: redo the rename the marker announces, clear it; True if it was set.

    Safe without the compaction lock: a live compaction holds the write lock from setting the
    marker to clearing it, so a marker seen under the write lock is a dead compaction's.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (MARKER,)).fetchone()
    if row is None:
        return False
    segment, copy = int(row[0]), copy_path(log_, int(row[0]))
    renamed = os.path.exists(copy)  # whole, since (a) fsynced it; if gone, (c) was done
    if renamed:
        os.replace(copy, log_.path(segment))
        durable.sync_dir(log_.directory)
    conn.execute("DELETE FROM meta WHERE key = ?", (MARKER,))
    log.warning("maintenance.compaction_finished", segment=segment, renamed=renamed)
    return True


def remove_stale_copies(log_: Log) -> None:
    """Copies a compaction left before its step (b): no job points into them."""
    for name in os.listdir(log_.directory):
        if name.endswith(".compact"):
            os.unlink(os.path.join(log_.directory, name))


def lock(root: str, timeout: float = -1) -> filelock.FileLock:
    """The lock that keeps two compactions (or a compaction and a backup) from overlapping."""
    import filelock

    return filelock.FileLock(os.path.join(root, "compact.lock"), timeout=timeout,
                             mode=permissions.file_mode(root))


def copy_path(log_: Log, segment: int) -> str:
    return os.path.join(log_.directory, f"{segment:012d}.compact")
