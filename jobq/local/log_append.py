"""Appending to the job log (:mod:`jobq.local.log`): the append lock, zero fill, fsync.

Its own module because the write side is a concept of its own (where a writer may write, and
what it must check first), and the one that must stay cheapest: :func:`append` is
:meth:`Log.append <jobq.local.log.Log.append>` itself, a plain function bound in Log's class
body, so no extra Python call is added on the path of a record.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from typing import TYPE_CHECKING

from . import durable, permissions
from .. import record
from ._flock import fork_generation
from ..errors import StorageError
from .log_read import RESERVE, Position, _ZEROS, _data_end

if TYPE_CHECKING:
    from .log import Log

_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# Kept in append.lock (ProcessLock.shared): a counter changed before a segment is created,
# sealed or cut; then where the last write left the newest segment: its number, where its last
# frame starts, where that frame ends, and the file's size. A writer checks all of it (the frame's
# header, the zeros after it, the size) before it writes there: see log_append._writable_segment.
_SHARED = struct.Struct("<QQQQQ")
_HINT = struct.Struct("<QQQQ")
_HINT_AT = 8
_CHECK_IN_ONE_READ = 4096  # a last frame up to this size is checked in the same pread as the zeros


class _WriteHandle:
    """An append descriptor of one segment, closed only once no fsync on it is still to come.

    A thread fsyncs after releasing the append lock; meanwhile another thread may roll over to a
    new segment. Closing the old descriptor then would make the first thread's fsync fail, or
    worse, flush an unrelated file that reused the descriptor number, and report a record durable
    that is not.
    """

    __slots__ = ("fd", "segment", "next_path", "pending", "retired", "layout")

    def __init__(self, fd: int, segment: int, next_path: str) -> None:
        self.fd, self.segment, self.pending, self.retired = fd, segment, 0, False
        self.next_path = next_path  # the segment after this one: its existence means "move on"
        self.layout = -1  # the append lock's counter when last looked at; -1: look first


def append(self: Log, frames: list[bytes], last: int | None = None) -> Position:
    """Write framed records as one contiguous run; return where the first one starts.

    ``frames`` are whole frames, or pieces of them (headers and bodies) in order; ``last``
    is the size of the last frame, if it is not the last piece. Returns once the records
    are on stable storage, unless the log was opened with ``fsync=False``.
    """
    data = frames[0] if len(frames) == 1 else b"".join(frames)
    fsync = self._fsync
    lock = self._lock
    lock.acquire()  # not ``with``: two Python calls fewer on the path of every record
    try:
        try:
            handle, offset, size, created = _writable_segment(self, len(data))
        except StorageError:
            raise
        except OSError as exc:
            # Creating the next segment, or a look at this one, failed: nothing written.
            raise StorageError(f"cannot append to {self.directory}: {exc.strerror or exc}",
                               path=self.directory, errno=exc.errno) from exc
        _write(self, handle, data, offset, size, last or len(frames[-1]))
        if fsync:
            with self._pending_lock:
                handle.pending += 1
    finally:
        lock.release()
    if fsync:
        _sync(self, handle, created)
    return Position(handle.segment, offset)


def _write(self: Log, handle: _WriteHandle, data: bytes, offset: int, size: int,
           last: int) -> None:
    """Under the append lock: write ``data`` (its last frame ``last`` bytes long) at
    ``offset``, where the records end and only zeros follow, and zero fill past it when the
    write extends the file."""
    fd, end = handle.fd, offset + len(data)
    fill = min(RESERVE, max(0, self._segment_size - end)) if end > size else 0
    try:
        try:
            if fill:
                _pwrite_all(fd, [data, _ZEROS[:fill]], offset)
            elif (written := os.pwrite(fd, data, offset)) < len(data):
                _pwrite_all(fd, [data[written:]], offset + written)  # a short write: go on
        except OSError as exc:
            if not fill or exc.errno not in _NO_SPACE:
                raise
            # The zero fill did not fit, the record alone may: write it without.
            _undo_write(fd, offset, end + fill, size)
            fill = 0
            _pwrite_all(fd, [data], offset)
    except OSError as exc:
        # ENOSPC, EFBIG, EIO...: put the zeros back so no torn record is left behind.
        _undo_write(fd, offset, end + fill, size)
        handle.layout = -1  # the undo may have failed too: look at the segment next time
        path = self.path(handle.segment)
        raise StorageError(f"cannot append to {path}: {exc.strerror or exc}",
                           path=path, errno=exc.errno) from exc
    _set_hint(self, handle.segment, end - last, end, max(size, end + fill))


def _set_hint(self: Log, segment: int, last: int, end: int, size: int) -> None:
    with contextlib.suppress(OSError):  # only a hint: without it, writers take the slow path
        self._lock.set_shared(_HINT.pack(segment, last, end, size), _HINT_AT)


def _layout(self: Log) -> int:
    return _SHARED.unpack(self._lock.shared(_SHARED.size))[0]


def _bump_layout(self: Log) -> None:
    """Under the append lock, before a segment is created, sealed or cut: every writer's
    next append then looks at its segment anew (log_append._move_to_newest_segment)."""
    self._lock.set_shared(((_layout(self) + 1) % (1 << 64)).to_bytes(8, "little"))


def _sync(self: Log, handle: _WriteHandle, created: bool) -> None:
    """After the append lock is released: fsync what this thread wrote (and a new segment's
    directory entry), then close the handle if it was retired meanwhile."""
    try:
        durable.sync_file(handle.fd)
        if created:
            durable.sync_dir(self.directory)
    except OSError as exc:
        path = self.path(handle.segment)
        raise StorageError(f"cannot fsync {path}: {exc}", path=path,
                           errno=exc.errno) from exc
    finally:
        with self._pending_lock:
            handle.pending -= 1
            if handle.retired and handle.pending == 0:
                os.close(handle.fd)


def _writable_segment(self: Log, need: int) -> tuple[_WriteHandle, int, int, bool]:
    """Under the append lock: the newest segment with room (rolling over), where its records
    end, its file size, and whether this call created it.

    The rule that keeps every acknowledged record readable: a record is written only where
    the records end and nothing but zeros follows, up to the end of the file. The index
    never covers more than the records and the damage between them (Log.scan), so a record
    written there is one the index reads. Bytes past a run of zeros (a writer of format 1
    appending after the fill, a power cut that kept a later page) are never written before.
    """
    handle = self._handle
    layout, segment, last, end, size = _SHARED.unpack(self._lock.shared(_SHARED.size))
    if handle is not None and handle.layout == layout and segment == handle.segment \
            and end < self._segment_size and self._handle_generation == fork_generation() \
            and _at_end(handle.fd, last, end, size, need, self._max_body):
        # The common case: a pread of the lock file, an lseek and one pread of the segment,
        # and no stat (a stat of the segment would make the next write update its change
        # time, and the fdatasync after it commit the inode: about 1.4x slower here). The
        # counter shows no segment was created, sealed or cut since this process last
        # looked; the hint, checked, says where the last write (of any process) ended.
        return handle, end, size, False
    return _move_to_newest_segment(self, need)


def _move_to_newest_segment(self: Log, need: int) -> tuple[_WriteHandle, int, int, bool]:
    """The slow path: check the segment itself, and move to the newest one if it is full,
    sealed (its mode: a writer idle on it must move on even if the segments after it were
    compacted away) or passed by another writer."""
    if self._handle_generation != fork_generation():
        # A forked child opens its own descriptor (the parent's may be closed under it).
        self._handle, self._handle_generation = None, fork_generation()
    created = False
    if self._handle is None:
        segments = self.segments()
        if not segments:
            _bump_layout(self)
        self._handle, created = _open_for_write(self, segments[-1] if segments else 1)
    while True:
        handle = self._handle
        st = os.fstat(handle.fd)
        # Sealed: made read-only, or (another user's, in a shared queue) replaced by a
        # read-only copy, which leaves this descriptor's file with no name.
        if st.st_mode & stat.S_IWUSR and st.st_nlink and not _exists(handle.next_path):
            # After the last non-zero byte: where the records end, or after torn bytes
            # (which then lie between records, and are skipped as damage).
            end = _data_end(handle.fd, st.st_size)
            if end < self._segment_size:
                handle.layout = _layout(self)
                return handle, end, st.st_size, created
        # The newest segment, not old + 1: compaction may have shrunk or removed the ones
        # between, and a record appended to a segment the index has passed is never indexed.
        newest = max([handle.segment + 1, *self.segments()[-1:]])
        _bump_layout(self)  # before the new segment exists: see Log.seal
        self._handle, now_created = _open_for_write(self, newest)
        created = created or now_created
        _retire(self, handle)


def _retire(self: Log, handle: _WriteHandle) -> None:
    with self._pending_lock:
        handle.retired = True
        if handle.pending == 0:
            os.close(handle.fd)


def _open_for_write(self: Log, segment: int) -> tuple[_WriteHandle, bool]:
    path = self.path(segment)
    flags = os.O_RDWR | os.O_CLOEXEC  # read too: a writer checks what it would overwrite
    try:
        fd, created = permissions.create_file(path, flags), True
    except FileExistsError:
        fd, created = os.open(path, flags), False
    return _WriteHandle(fd, segment, self.path(segment + 1)), created


def _pwrite_all(fd: int, buffers: list[bytes], offset: int) -> None:
    """Write every byte of ``buffers`` at ``offset`` (a short write, a signal, goes on)."""
    while True:
        written = os.pwritev(fd, buffers, offset)
        offset += written
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers = buffers[1:]
        if not buffers:
            return
        if written:
            buffers = [buffers[0][written:], *buffers[1:]]


def _undo_write(fd: int, offset: int, end: int, size: int) -> None:
    """After a failed write of bytes ``[offset, end)`` to a file of ``size`` bytes: zero what it
    overwrote and cut what it added, so no part of a record is left (best effort: a write that
    failed may leave nothing else to do, and a torn tail left anyway is cut by the next scan)."""
    with contextlib.suppress(OSError):
        if end > size:
            os.ftruncate(fd, max(size, offset))
        if offset < size:
            _pwrite_all(fd, [bytes(min(end, size) - offset)], offset)


def _at_end(fd: int, last: int, end: int, size: int, need: int, max_body: int) -> bool:
    """Does the hint in the append lock hold? A genuine frame header at ``last`` says the frame
    ends at ``end`` (``end`` is a frame boundary: 0, or a frame's end, never inside one); the file
    is still ``size`` bytes long (nobody appended past the zero fill); and the ``need`` bytes
    from ``end`` (or up to the end of the file) are zeros (no record was written there since)."""
    if end > size or os.lseek(fd, 0, os.SEEK_END) != size:
        return False
    want = min(need, size - end, len(_ZEROS))
    frame = end - last
    if frame <= 0:
        if end or last:
            return False
        head, zeros = b"", os.pread(fd, want, 0)
    elif frame <= _CHECK_IN_ONE_READ:
        got = os.pread(fd, frame + want, last)
        head, zeros = got[:record.HEADER_SIZE], got[frame:]
    else:
        head, zeros = os.pread(fd, record.HEADER_SIZE, last), os.pread(fd, want, end)
    if frame > 0 and record.frame_size(head, 0, max_body=max_body) != frame:
        return False
    return len(zeros) == want and zeros == _ZEROS[:want]


def _exists(path: str) -> bool:
    # os.path.exists() raises and catches a FileNotFoundError when the answer is no, the usual
    # answer on the append path; access() just returns False: 0.8 µs instead of 2.
    return os.access(path, os.F_OK, effective_ids=True)
