"""The append-only job log: segment files of framed records under ``<queue>/log/``.

Appending: a record (or a batch) is one write under a short inter-process lock, so records of
concurrent producers never interleave; the fsync happens after the lock is released, so producers
never wait behind one another's fsyncs and the disk can run several flushes at once. Measured here
(``scripts/bench_enqueue.py``, figure 7), that beat a user-space group commit, which allows one
flush at a time, by 1.4-1.9x with four producers. A write
that fails part-way is undone before the lock is released, so no partial record survives it.

Zero fill: a write that extends a segment also writes RESERVE zero bytes after its records, and
the next records overwrite them. The fdatasync of an append must also commit the file's new size
(a journal commit on ext4); the fdatasync of an overwrite flushes only the data. Measured here
(``scripts/bench.py``, target 1), that makes a durable enqueue about 1.3x faster than appending.
A segment's records end at its last non-zero byte: a frame never ends in a zero byte
(``jobq.record``). A writer writes only there, where nothing but zeros follows to the end of the
file: it never overwrites a record, whatever a crash or an older writer left behind, and never
writes before bytes that a reader may already have passed (which the index would never read).

Reading: :func:`Log.scan` walks records from a position and reports three things: whole verified
records, damaged byte ranges followed by more records (quarantined and skipped by the index), and an
incomplete tail: in the newest segment, everything from the first bad byte that no whole record
follows. An incomplete tail may be a write in progress; only :meth:`Log.repair_tail`, which
holds the append lock so that no write can be in progress, treats it as torn and cuts it, after
copying the bytes aside. A segment is read in chunks, never whole.

Segments are named by number (``000000000001.log``); a writer moves to the next one when the
current one has reached ``segment_size``, or when :meth:`Log.seal` sealed it early (compaction does,
so that the segment being appended to can be compacted too). Once a later segment exists, earlier
ones never change. A segment sealed early is made read-only: a writer idle on it since before the
seal sees that from its own descriptor, even once the segments after it are gone. It looks
because whatever creates, seals or cuts a segment first changes a counter kept in the append
lock file, which every append reads: a writer whose counter is stale looks at its segment anew.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple


from . import durable, permissions
from .. import record
from ._flock import ProcessLock, fork_generation
from ..errors import CorruptRecord, DamagedRecord, StorageError
from .._logging import get_logger

log = get_logger(__name__)

CHUNK = 1 << 20  # the most a segment reader reads at once
FIRST_CHUNK = 1 << 16  # its first read; each next one doubles, up to CHUNK
RESERVE = 1 << 16  # zero fill written past the records whenever a write extends a segment
_ZEROS = bytes(RESERVE)  # compared with, sliced: never longer than this
_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
# Kept in append.lock (ProcessLock.shared): a counter changed before a segment is created,
# sealed or cut; then where the last write left the newest segment: its number, where its last
# frame starts, where that frame ends, and the file's size. A writer checks all of it (the frame's
# header, the zeros after it, the size) before it writes there: see Log._writable_segment.
_SHARED = struct.Struct("<QQQQQ")
_HINT = struct.Struct("<QQQQ")
_HINT_AT = 8
_CHECK_IN_ONE_READ = 4096  # a last frame up to this size is checked in the same pread as the zeros
_SEGMENT_RE = re.compile(r"^(\d{12})\.log$")


class Position(NamedTuple):
    """A byte position in the log: segment number and offset within it.

    A named tuple, like :class:`Entry` and :class:`record.Frame`: indexing makes a few of them
    per record, and a tuple is made in a third of the time a frozen dataclass takes.
    """

    segment: int
    offset: int


class Entry(NamedTuple):
    """A whole, verified record."""

    pos: Position
    frame: record.Frame


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes ``[pos.offset, end)`` of one segment are not records, and records follow them."""

    pos: Position
    end: int
    reason: str


@dataclass(frozen=True, slots=True)
class Sealed:
    """Segment ``pos.segment`` was read to its end and a later one exists: go on at ``next``."""

    pos: Position
    next: Position


@dataclass(frozen=True, slots=True)
class Tail:
    """The last segment ends in an incomplete record at ``pos``: a write in progress, or torn."""

    pos: Position
    reason: str


ScanItem = Entry | Damage | Sealed | Tail


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


def segment_name(number: int) -> str:
    return f"{number:012d}.log"


class Log:
    """Appends framed records durably and scans them back."""

    def __init__(self, directory: str, *, key: bytes | None, max_body: int, segment_size: int,
                 fsync: bool = True, quarantine_dir: str, old_keys: tuple[bytes, ...] = (),
                 any_signer: bool = False) -> None:
        """``key`` signs and verifies; ``old_keys`` only verify (see :mod:`jobq.local.keys`); with
        ``any_signer`` a record no key signed is read, as ``record.UNKNOWN_SIGNER``, not damage."""
        self.directory = directory
        self.quarantine_dir = quarantine_dir
        self._key = key
        self._verify = (old_keys, any_signer)
        self._max_body = max_body
        self._segment_size = segment_size
        self._fsync = fsync
        self._lock = ProcessLock(os.path.join(directory, "append.lock"))
        self._handle: _WriteHandle | None = None
        self._handle_generation = -1  # the fork generation that opened _handle
        self._pending_lock = threading.Lock()  # guards _WriteHandle.pending and .retired
        self._read_fds: dict[int, int] = {}
        self._read_lock = threading.Lock()

    # -- segments ---------------------------------------------------------------------------

    def path(self, segment: int) -> str:
        return os.path.join(self.directory, segment_name(segment))

    def segments(self) -> list[int]:
        """Numbers of the segment files present, oldest first."""
        found = (_SEGMENT_RE.match(name) for name in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def end(self) -> Position:
        """Where the log's records end now (a snapshot; producers may append right after)."""
        segments = self.segments()
        if not segments:
            return Position(1, 0)
        with self._reader(segments[-1]) as reader:
            return Position(segments[-1], reader.size)

    def has_more(self, pos: Position) -> bool:
        """Cheap check: is there anything in the log past ``pos``?

        One pread when a record (or part of one) is there; when zero fill is, a read of the
        rest of it (at most RESERVE bytes, unless power was lost during a large write).
        """
        try:
            with self._read_lock:
                # No recheck (a stat): compaction replaces only sealed segments, and after one
                # of those a later segment exists, so the answer is True either way.
                fd = self._read_fd(pos.segment, recheck=False)
                if not _zeros_only(fd, pos.offset):
                    return True
        except FileNotFoundError:
            pass
        return any(s > pos.segment for s in self.segments())

    @property
    def key(self) -> bytes | None:
        """The key that signs new records (and verifies first)."""
        return self._key

    # -- appending ---------------------------------------------------------------------------

    def encode(self, kind: int, body: bytes) -> bytes:
        return record.encode(kind, body, self._key)

    def frame_header(self, kind: int, body: bytes) -> bytes:
        """What :meth:`encode` puts in front of ``body``."""
        return record.header(kind, body, self._key)

    def append(self, frames: list[bytes], last: int | None = None) -> Position:
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
                handle, offset, size, created = self._writable_segment(len(data))
            except StorageError:
                raise
            except OSError as exc:
                # Creating the next segment, or a look at this one, failed: nothing written.
                raise StorageError(f"cannot append to {self.directory}: {exc.strerror or exc}",
                                   path=self.directory, errno=exc.errno) from exc
            self._write(handle, data, offset, size, last or len(frames[-1]))
            if fsync:
                with self._pending_lock:
                    handle.pending += 1
        finally:
            lock.release()
        if fsync:
            self._sync(handle, created)
        return Position(handle.segment, offset)

    def _write(self, handle: _WriteHandle, data: bytes, offset: int, size: int,
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
        self._set_hint(handle.segment, end - last, end, max(size, end + fill))

    def _set_hint(self, segment: int, last: int, end: int, size: int) -> None:
        with contextlib.suppress(OSError):  # only a hint: without it, writers take the slow path
            self._lock.set_shared(_HINT.pack(segment, last, end, size), _HINT_AT)

    def _layout(self) -> int:
        return _SHARED.unpack(self._lock.shared(_SHARED.size))[0]

    def _bump_layout(self) -> None:
        """Under the append lock, before a segment is created, sealed or cut: every writer's
        next append then looks at its segment anew (Log._move_to_newest_segment)."""
        self._lock.set_shared(((self._layout() + 1) % (1 << 64)).to_bytes(8, "little"))

    def _sync(self, handle: _WriteHandle, created: bool) -> None:
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

    def _writable_segment(self, need: int) -> tuple[_WriteHandle, int, int, bool]:
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
        return self._move_to_newest_segment(need)

    def _move_to_newest_segment(self, need: int) -> tuple[_WriteHandle, int, int, bool]:
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
                self._bump_layout()
            self._handle, created = self._open_for_write(segments[-1] if segments else 1)
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
                    handle.layout = self._layout()
                    return handle, end, st.st_size, created
            # The newest segment, not old + 1: compaction may have shrunk or removed the ones
            # between, and a record appended to a segment the index has passed is never indexed.
            newest = max([handle.segment + 1, *self.segments()[-1:]])
            self._bump_layout()  # before the new segment exists: see Log.seal
            self._handle, now_created = self._open_for_write(newest)
            created = created or now_created
            self._retire(handle)

    def seal(self, segment: int) -> bool:
        """End ``segment`` early if it is still the newest and not empty; True if sealed.

        Under the append lock, so no write is in progress: the next append goes to a new segment.
        The new segment is created (durably: the index may soon cover it) before the sealed one
        is made read-only, so the newest segment is always writable.
        """
        with self._lock:
            self._seal_stragglers()
            if self.segments()[-1:] != [segment]:
                return False
            fd = os.open(self.path(segment), os.O_RDWR | os.O_CLOEXEC)
            try:
                end = _data_end(fd, _size(fd))
                if not end:
                    return False
                # First: a seal killed part-way must still send every writer to the slow path.
                self._bump_layout()
                os.close(permissions.create_file(self.path(segment + 1), os.O_WRONLY))
                durable.sync_dir(self.directory)
                os.ftruncate(fd, end)  # no record will follow: the zero fill is waste
            finally:
                os.close(fd)
            _make_read_only(self.path(segment))
        log.info("log.segment_sealed", segment=segment, next=segment + 1)
        return True

    def seal_stragglers(self) -> None:
        """Make read-only every earlier segment a seal left writable (it died between its steps).

        Compaction calls it before it deletes anything: a writer idle on a short segment must
        learn it was sealed from that segment itself once the next one is gone.
        """
        with self._lock:
            self._seal_stragglers()

    def _seal_stragglers(self) -> None:
        for segment in self.segments()[:-1]:
            with contextlib.suppress(FileNotFoundError):  # compaction may delete it meanwhile
                if os.stat(self.path(segment)).st_mode & stat.S_IWUSR:
                    _make_read_only(self.path(segment))

    def _retire(self, handle: _WriteHandle) -> None:
        with self._pending_lock:
            handle.retired = True
            if handle.pending == 0:
                os.close(handle.fd)

    def _open_for_write(self, segment: int) -> tuple[_WriteHandle, bool]:
        path = self.path(segment)
        flags = os.O_RDWR | os.O_CLOEXEC  # read too: a writer checks what it would overwrite
        try:
            fd, created = permissions.create_file(path, flags), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
        return _WriteHandle(fd, segment, self.path(segment + 1)), created

    # -- reading -----------------------------------------------------------------------------

    def read(self, pos: Position, *, recheck: bool = True) -> record.Frame:
        """Read and verify the single record at ``pos`` (to load one job's payload).

        ``recheck=False`` skips making sure a cached descriptor still names the segment's file
        (one stat per read): for a caller that can tell a record that moved (compaction renames
        a rewritten segment over the old one) and then reads again with the check.
        """
        try:
            data = self._pread(pos.segment, 4096, pos.offset, recheck)
            try:
                return record.decode(data, 0, key=self._key, max_body=self._max_body,
                                     old_keys=self._verify[0], any_signer=self._verify[1])
            except record.Incomplete as exc:
                if exc.needed is None:
                    raise
                data = self._pread(pos.segment, exc.needed, pos.offset, recheck)
                return record.decode(data, 0, key=self._key, max_body=self._max_body,
                                     old_keys=self._verify[0], any_signer=self._verify[1])
        except (record.Damaged, record.Incomplete) as exc:
            reason = str(exc) if isinstance(exc, record.Damaged) else "truncated"
            raise DamagedRecord(f"record at {self.path(pos.segment)}:{pos.offset} is unreadable:"
                                f" {reason}", path=self.path(pos.segment), offset=pos.offset,
                                reason=reason) from exc

    def _reader(self, segment: int) -> _SegmentReader:
        return _SegmentReader(self.path(segment), self._max_body, self._key, self._verify)

    def _pread(self, segment: int, size: int, offset: int, recheck: bool = True) -> bytes:
        # Under the lock: another thread may evict and close a cached descriptor otherwise.
        with self._read_lock:
            try:
                fd = self._read_fd(segment, recheck)
            except FileNotFoundError as exc:
                raise CorruptRecord(f"log segment {self.path(segment)} is missing",
                                    path=self.path(segment)) from exc
            return os.pread(fd, size, offset)

    def _read_fd(self, segment: int, recheck: bool) -> int:
        """A cached read descriptor of ``segment`` (under ``_read_lock``)."""
        fd = self._read_fds.get(segment)
        if fd is not None and recheck and not _same_file(fd, self.path(segment)):
            # Compaction replaced the segment: its records moved, the old file is stale.
            os.close(self._read_fds.pop(segment))
            fd = None
        if fd is None:
            if len(self._read_fds) >= 8:
                os.close(self._read_fds.pop(next(iter(self._read_fds))))
            fd = os.open(self.path(segment), os.O_RDONLY | os.O_CLOEXEC)
            self._read_fds[segment] = fd
        return fd

    def scan(self, start: Position) -> Iterator[ScanItem]:
        """Yield every record, damaged range and (last) incomplete tail from ``start`` on."""
        segment, offset = start.segment, start.offset
        while True:
            later = [s for s in self.segments() if s > segment]  # listed before the size is read
            try:
                reader = self._reader(segment)
            except FileNotFoundError:
                if not later:
                    return
                segment, offset = later[0], 0
                continue
            with reader:
                if offset > reader.size:
                    raise CorruptRecord(
                        f"the index covers {self.path(segment)} up to byte {offset}, but the file"
                        f" has only {reader.size}: the log was truncated or replaced",
                        path=self.path(segment), offset=offset)
                for item in reader.items(segment, offset, sealed=bool(later)):
                    yield item
                    if isinstance(item, Tail):
                        return
            if not later:
                return
            yield Sealed(Position(segment, reader.size), Position(later[0], 0))
            segment, offset = later[0], 0

    # -- repair ------------------------------------------------------------------------------

    def repair_tail(self, tail: Position) -> bool:
        """Cut a torn tail found at ``tail``; return True if bytes were cut.

        Holds the append lock, so no write is in progress: an incomplete record still there is
        torn (its writer died or the machine lost power). The bytes are copied aside first.
        """
        with self._lock:
            if self.segments()[-1:] != [tail.segment]:
                return False
            with self._reader(tail.segment) as reader:
                found = [i for i in reader.items(tail.segment, tail.offset, sealed=False)
                         if isinstance(i, Tail)]
                if not found or found[0].pos != tail:
                    return False  # the tail completed, or moved on, since it was seen
                size = reader.size
                torn = os.pread(reader.fd, size - tail.offset, tail.offset)
            saved = self.save_aside(tail, torn, "torn")
            self._bump_layout()  # writers must not trust where they last saw the end
            fd = os.open(self.path(tail.segment), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.ftruncate(fd, tail.offset)
                durable.sync_file(fd)
            finally:
                os.close(fd)
        log.warning("log.tail_truncated", segment=tail.segment, offset=tail.offset,
                    bytes=len(torn), reason=found[0].reason, saved_to=saved)
        return True

    def read_range(self, segment: int, start: int, end: int) -> bytes:
        fd = os.open(self.path(segment), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, end - start, start)
        finally:
            os.close(fd)

    def save_aside(self, pos: Position, data: bytes, what: str) -> str:
        """Copy damaged or torn bytes to the quarantine directory (idempotent per position)."""
        path = os.path.join(self.quarantine_dir, f"{pos.segment:012d}-{pos.offset:012d}.{what}")
        durable.atomic_write(path, data, exclusive=True)
        return path

    def close(self) -> None:
        if self._handle is not None and self._handle_generation == fork_generation():
            self._retire(self._handle)
        self._handle = None
        with self._read_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
        self._lock.close()


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


def _zeros_only(fd: int, start: int) -> bool:
    """Does the file hold only zeros from ``start`` to its end? Reads a page first: usually
    the answer is no and the first bytes tell. No stat: see Log._writable_segment."""
    step = 1 << 12
    while True:
        got = os.pread(fd, step, start)
        if got != _ZEROS[:len(got)]:
            return False
        if len(got) < step:
            return True
        start, step = start + len(got), min(step * 4, len(_ZEROS))


def _data_end(fd: int, size: int) -> int:
    """One past the last byte that is not zero: where a segment's records end (a frame's last
    byte is never zero), or its torn tail does."""
    end, step = size, RESERVE
    while end > 0:
        start = max(0, end - step)
        block = os.pread(fd, end - start, start)
        # Compare whole pieces with zeros first (memcmp): rstrip walks byte by byte.
        cut = len(block)
        for piece in (1 << 14, 1 << 9):
            while cut >= piece and block[cut - piece:cut] == _ZEROS[:piece]:
                cut -= piece
        low = max(0, cut - (1 << 9))
        cut = low + len(block[low:cut].rstrip(b"\0"))
        if cut:
            return start + cut
        end, step = start, min(step * 4, CHUNK)
    return 0


def _size(fd: int) -> int:
    """A file's size, without a stat: a stat of a segment would make its next write update its
    change time, and the fdatasync after that write commit the inode (Log._writable_segment)."""
    return os.lseek(fd, 0, os.SEEK_END)


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


def _exists(path: str) -> bool:
    # os.path.exists() raises and catches a FileNotFoundError when the answer is no, the usual
    # answer on the append path; access() just returns False: 0.8 µs instead of 2.
    return os.access(path, os.F_OK, effective_ids=True)


def _same_file(fd: int, path: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class _SegmentReader:
    """Reads one segment file in chunks, keeping only a window of it in memory."""

    def __init__(self, path: str, max_body: int, key: bytes | None,
                 verify: tuple[tuple[bytes, ...], bool] = ((), False)) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = _data_end(self.fd, _size(self.fd))  # the zero fill is not read
        except BaseException:
            os.close(self.fd)
            raise
        self._max_body = max_body
        self._key = key
        self._old_keys, self._any_signer = verify
        self._buf = b""
        self._base = 0
        # A scan that stops after a few records (a claim indexes a couple of hundred) reads a
        # little; a long one soon reads CHUNK at a time.
        self._chunk = FIRST_CHUNK

    def __enter__(self) -> _SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def _window(self, pos: int, need: int) -> int:
        """Make the buffer start at or before ``pos`` and hold ``need`` bytes from it if the file
        has them; return ``pos``'s index in the buffer."""
        end = min(self.size, pos + max(need, 1))
        if pos < self._base or end > self._base + len(self._buf):
            length = min(self.size, max(end, pos + self._chunk)) - pos
            self._chunk = min(CHUNK, self._chunk * 2)
            self._buf = os.pread(self.fd, length, pos)
            self._base = pos
            if len(self._buf) < length:  # the file shrank under us (a tail was cut): stop there
                self.size = pos + len(self._buf)
        return pos - self._base

    def items(self, segment: int, offset: int, *, sealed: bool) -> Iterator[ScanItem]:
        """Records from ``offset``; damage only once a whole record follows it.

        In the newest segment, bad bytes that no whole record follows (zeros, then a frame that
        fails its checksum, say) are all the tail, from the first of them: the index never covers
        them, and a writer, which writes after the last non-zero byte, never writes before what
        the index covers (Log._writable_segment).
        """
        pos = offset
        least = record.HEADER_SIZE + record.MAC_SIZE
        pending: list[Damage] = []  # damaged ranges not yet followed by a whole record
        while pos < self.size:
            i = pos - self._base
            if i < 0 or i + least > len(self._buf):  # inline: most records are in the window
                i = self._window(pos, least)
            try:
                frame = record.decode(self._buf, i, key=self._key, max_body=self._max_body,
                                      old_keys=self._old_keys, any_signer=self._any_signer)
            except record.Incomplete as exc:
                need = exc.needed or record.HEADER_SIZE
                if pos + need <= self.size and len(self._buf) - i < need:
                    self._window(pos, need)
                    continue
                yield from self._ending(Position(segment, pos), pending, sealed,
                                        "incomplete record at the end of the segment")
                return
            except record.Damaged as exc:
                reason = str(exc)
                if not any(self._buf[i:i + record.HEADER_SIZE]):
                    reason = "zero bytes where a record should start"  # a lost or foreign write
                nxt = self._resync(pos + 1)
                if nxt is None:
                    yield from self._ending(Position(segment, pos), pending, sealed, reason)
                    return
                pending.append(Damage(Position(segment, pos), nxt, reason))
                pos = nxt
                continue
            if pending:
                yield from pending
                pending.clear()
            yield Entry(Position(segment, pos), frame)
            pos += frame.size

    def _ending(self, pos: Position, pending: list[Damage], sealed: bool,
                reason: str) -> Iterator[ScanItem]:
        """What bad bytes from ``pos`` to the end of the segment are, after ``pending`` damage."""
        if sealed:  # nothing is ever written to it again: damage, all of it
            yield from pending
            yield Damage(pos, self.size, reason)
        elif pending:
            first = pending[0]
            yield Tail(first.pos, f"{first.reason} at byte {first.pos.offset}, and no whole"
                                  f" record after it ({reason} at byte {pos.offset})")
        else:
            yield Tail(pos, reason)

    def _resync(self, start: int) -> int | None:
        """The first position at or after ``start`` holding a genuine header (or the start of one
        cut off by the end of the file), or None."""
        pos = start
        while pos < self.size:
            i = self._window(pos, CHUNK)
            hit = self._buf.find(record.MAGIC, i)
            if hit < 0:
                # Keep the last byte: it may be the first half of a magic split across windows.
                pos = max(pos + 1, self._base + len(self._buf) - 1)
                continue
            candidate = self._base + hit
            j = self._window(candidate, record.HEADER_SIZE)
            verdict = record.probe(self._buf, j, max_body=self._max_body)
            if verdict or (verdict is None and candidate + record.HEADER_SIZE > self.size):
                return candidate
            pos = candidate + 1
        return None
