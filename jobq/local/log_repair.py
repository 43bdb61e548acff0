"""Sealing and repairing the job log (:mod:`jobq.local.log`): rare changes under the append lock.

Its own module because it changes what writers and readers rely on (a segment ends early, a torn
tail is cut, bad bytes are kept aside), which neither the append path nor the read path does.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TYPE_CHECKING

from . import durable, permissions
from .log_append import _bump_layout
from .log_read import Position, Tail, _data_end, _reader, _size
from .._logging import get_logger

if TYPE_CHECKING:
    from .log import Log

log = get_logger("jobq.local.log")  # the logger name these events always had


def seal(self: Log, segment: int) -> bool:
    """End ``segment`` early if it is still the newest and not empty; True if sealed.

    Under the append lock, so no write is in progress: the next append goes to a new segment.
    The new segment is created (durably: the index may soon cover it) before the sealed one
    is made read-only, so the newest segment is always writable.
    """
    with self._lock:
        _seal_stragglers(self)
        if self.segments()[-1:] != [segment]:
            return False
        fd = os.open(self.path(segment), os.O_RDWR | os.O_CLOEXEC)
        try:
            end = _data_end(fd, _size(fd))
            if not end:
                return False
            # First: a seal killed part-way must still send every writer to the slow path.
            _bump_layout(self)
            os.close(permissions.create_file(self.path(segment + 1), os.O_WRONLY))
            durable.sync_dir(self.directory)
            os.ftruncate(fd, end)  # no record will follow: the zero fill is waste
        finally:
            os.close(fd)
        _make_read_only(self.path(segment))
    log.info("log.segment_sealed", segment=segment, next=segment + 1)
    return True


def seal_stragglers(self: Log) -> None:
    """Make read-only every earlier segment a seal left writable (it died between its steps).

    Compaction calls it before it deletes anything: a writer idle on a short segment must
    learn it was sealed from that segment itself once the next one is gone.
    """
    with self._lock:
        _seal_stragglers(self)


def _seal_stragglers(self: Log) -> None:
    for segment in self.segments()[:-1]:
        with contextlib.suppress(FileNotFoundError):  # compaction may delete it meanwhile
            if os.stat(self.path(segment)).st_mode & stat.S_IWUSR:
                _make_read_only(self.path(segment))



def repair_tail(self: Log, tail: Position) -> bool:
    """Cut a torn tail found at ``tail``; return True if bytes were cut.

    Holds the append lock, so no write is in progress: an incomplete record still there is
    torn (its writer died or the machine lost power). The bytes are copied aside first.
    """
    with self._lock:
        if self.segments()[-1:] != [tail.segment]:
            return False
        with _reader(self, tail.segment) as reader:
            found = [i for i in reader.items(tail.segment, tail.offset, sealed=False)
                     if isinstance(i, Tail)]
            if not found or found[0].pos != tail:
                return False  # the tail completed, or moved on, since it was seen
            size = reader.size
            torn = os.pread(reader.fd, size - tail.offset, tail.offset)
        saved = self.save_aside(tail, torn, "torn")
        _bump_layout(self)  # writers must not trust where they last saw the end
        fd = os.open(self.path(tail.segment), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, tail.offset)
            durable.sync_file(fd)
        finally:
            os.close(fd)
    log.warning("log.tail_truncated", segment=tail.segment, offset=tail.offset,
                bytes=len(torn), reason=found[0].reason, saved_to=saved)
    return True


def read_range(self: Log, segment: int, start: int, end: int) -> bytes:
    fd = os.open(self.path(segment), os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, end - start, start)
    finally:
        os.close(fd)


def save_aside(self: Log, pos: Position, data: bytes, what: str) -> str:
    """Copy damaged or torn bytes to the quarantine directory (idempotent per position)."""
    path = os.path.join(self.quarantine_dir, f"{pos.segment:012d}-{pos.offset:012d}.{what}")
    durable.atomic_write(path, data, exclusive=True)
    return path


def _make_read_only(path: str) -> None:
    """Seal a segment, under the append lock: no write bit, so that a writer idle on it sees
    from its own descriptor that it must move on."""
    mode = stat.S_IMODE(os.stat(path).st_mode) & ~0o222
    try:
        os.chmod(path, mode)
    except PermissionError:
        _replace_read_only(path, mode)


def _replace_read_only(path: str, mode: int) -> None:
    """In a shared queue only the owner of a segment may chmod it: put a read-only copy in its
    place instead. A writer idle on the old file sees it has no name left (st_nlink 0)."""
    copy = f"{path}.seal"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(copy)  # left by a seal that died here
    durable.copy_file(path, copy, mode)
    os.replace(copy, path)
    durable.sync_dir(os.path.dirname(path))
