"""Backup: a consistent copy of a live queue, taken while producers and workers run.

The copy is made in this order, and the order is what makes it consistent:

1. the state database, with SQLite's online backup (one read transaction: the state as of one
   commit, while workers go on committing);
2. every log segment, up to where the log ends once (1) has finished. The state points only at
   records before that end (the position the index covers, each job's payload), and a job whose
   enqueue returned before the backup started was in the log before it; opening the copy indexes
   the records after the covered position, as opening any queue does;
3. ``jobq.json`` and the quarantined bytes.

Segments are append-only: the bytes before the end taken in (2) do not change while they are
copied. Only compaction replaces a segment (and moves the seqs in the state with it), so the
backup holds the compaction lock throughout, and first finishes a compaction that died half-way.

Not copied: locks, the workers' liveness files, SQLite's ``-wal`` and ``-shm`` (the copied
database is one file). A job running during the backup is running in the copy too, owned by a
worker that does not exist there: the first worker on the copy takes it back and runs it again,
as after a crash. The secret key is not in the queue directory (``jobq.json`` holds only a
fingerprint of it): the copy holds no secret, and is opened with the same key as the queue.

The copy is built in ``DEST.tmp-XXXXXXXX`` beside DEST, every file and directory synced, then
renamed to DEST: DEST is either absent or complete, also after a crash.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import sqlite3
import stat
import tempfile
from typing import TYPE_CHECKING

from . import durable, permissions, sqlite_dbm
from .._logging import get_logger
from .directory import FORMAT_FILE, QueueDir
from ..errors import InvalidArgument, StorageError
from .log import Position, segment_name
from .state_db import UNFINISHED_COUNTS
from .compaction import lock as compaction_lock, redo_interrupted

if TYPE_CHECKING:
    from .parts import Parts

__all__ = ["BackupReport", "backup"]

log = get_logger(__name__)


@dataclasses.dataclass(frozen=True)
class BackupReport:
    """What one :func:`backup` copied."""

    path: str
    jobs: int  # in the copied state; records appended after it are indexed when it is opened
    log_end: Position  # where the copied log ends
    segments: int
    bytes: int  # of the whole copy


def backup(engine: Parts, dest: str | os.PathLike[str]) -> BackupReport:
    """Copy ``queue`` to the new directory ``dest``, consistently, while it is in use."""
    dest = os.path.abspath(os.fspath(dest))
    _check_dest(dest, engine.path)
    src, parent = QueueDir(engine.path), os.path.dirname(dest)
    try:
        tmp = tempfile.mkdtemp(prefix=f"{os.path.basename(dest)}.tmp-", dir=parent)  # 0700
    except OSError as exc:
        raise _error(f"cannot create the backup beside {dest}", exc, parent) from exc
    try:
        copy = QueueDir(tmp)
        durable.make_dir(copy.log)
        durable.make_dir(copy.quarantine)
        with compaction_lock(engine.path):  # compaction would replace segments the state uses
            with engine.store.transaction() as conn:
                # One that died after moving seqs: its rename first, or they mismatch.
                redo_interrupted(conn, engine.log)
            jobs = _copy_state(src.state_db, copy.state_db)
            end, segments = _copy_log(engine, copy)  # the order that makes the copy consistent
        _copy_file(os.path.join(src.root, FORMAT_FILE), os.path.join(tmp, FORMAT_FILE))
        for name in sorted(os.listdir(src.quarantine)):
            path = os.path.join(src.quarantine, name)
            if ".tmp." not in name and stat.S_ISREG(os.lstat(path).st_mode):
                _copy_file(path, os.path.join(copy.quarantine, name))
        for directory in (copy.log, copy.quarantine, tmp):
            durable.sync_dir(directory)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(tmp)
                   for f in files)
        if engine.shared_group is not None:  # the copy is for the same users as the queue
            permissions.share(tmp, engine.shared_group)
        _publish(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise _error(f"cannot back up {engine.path} to {dest}", exc, dest) from exc
        raise
    report = BackupReport(dest, jobs, end, segments, size)
    log.info("queue.backed_up", source=engine.path, **dataclasses.asdict(report))
    return report


def _check_dest(dest: str, root: str) -> None:
    """Refuse a destination that holds anything, or lies inside the queue itself."""
    real, queue_root = os.path.realpath(dest), os.path.realpath(root)
    if os.path.commonpath([real, queue_root]) == queue_root:
        raise InvalidArgument(f"backup destination {dest} is inside the queue directory {root}:"
                              " choose a path outside it")
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.listdir(dest)):
        raise InvalidArgument(f"backup destination {dest} exists and is not an empty directory:"
                              " choose a new path (a backup never overwrites anything)")
    if not os.path.isdir(os.path.dirname(dest)):
        raise InvalidArgument(f"no directory {os.path.dirname(dest)} to write the backup in")


def _copy_state(source: str, target: str) -> int:
    """SQLite's online backup of the state database; returns the jobs it holds."""
    # Created owner-only before SQLite opens it (it would use the umask).
    os.close(permissions.create_file(target, os.O_WRONLY))
    try:
        src = sqlite_dbm.connect(source, readonly=True)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read state database {source}: {exc}", path=source) from exc
    try:
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            # One step (pages=-1): the whole copy in one read transaction, so it is the state as
            # of one commit. (In several steps, a commit in between restarts the copy.)
            src.backup(dst, pages=-1)
            jobs = dst.execute("SELECT COALESCE(SUM(n), 0) FROM job_counts").fetchone()[0] \
                + sum(n for _, n in dst.execute(UNFINISHED_COUNTS))
        finally:
            dst.close()  # the last connection: a WAL it made is checkpointed and removed
    except sqlite3.Error as exc:
        raise StorageError(f"cannot back up state database {source}: {exc}",
                           path=source) from exc
    finally:
        src.close()
    _sync(target)
    return jobs


def _copy_log(engine: Parts, copy: QueueDir) -> tuple[Position, int]:
    """Copy the log up to where it ends now, after the state was copied (the state points at
    nothing beyond it); return that end and how many segments were copied."""
    end = engine.log.end()
    segments = [s for s in engine.log.segments() if s <= end.segment]
    for segment in segments:  # earlier ones are sealed: whole; the last one up to the end
        _copy_file(engine.log.path(segment), os.path.join(copy.log, segment_name(segment)),
                   end.offset if segment == end.segment else None)
    return end, len(segments)


def _copy_file(source: str, target: str, length: int | None = None) -> None:
    """Copy ``source`` (its first ``length`` bytes, if given) to the new file ``target``, synced;
    a read-only (sealed) segment stays read-only.

    A segment may end before ``length`` by the time it is read: a torn tail was cut meanwhile
    (Log.repair_tail). Nothing the copied state points at lay in those bytes.
    """
    mode = stat.S_IMODE(os.stat(source).st_mode) & permissions.FILE_MODE
    durable.copy_file(source, target, mode, length)


def _publish(tmp: str, dest: str) -> None:
    """Rename the finished copy to ``dest`` (over an empty directory, never a full one)."""
    try:
        os.rename(tmp, dest)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
        raise InvalidArgument(f"backup destination {dest} was created while the backup ran:"
                              f" {exc.strerror or exc}") from exc
    durable.sync_dir(os.path.dirname(dest))


def _sync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        durable.sync_file(fd)
    finally:
        os.close(fd)


def _error(what: str, exc: OSError, path: str) -> StorageError:
    return StorageError(f"{what}: {exc.strerror or exc}", path=path, errno=exc.errno)
