"""Scanning the job log (:mod:`jobq.local.log`): the records, damage and tail a scan finds.

Its own module because reading is a concept of its own: the append side needs from it only where
a segment's records end (:func:`_data_end`) and the size of the zero fill. These are
:class:`~jobq.local.log.Log`'s reading methods: plain functions of the Log, bound in its class
body, so no extra Python call is added on the path of a read.

Two ways to scan: :func:`scan` yields an :class:`Entry` per record; :func:`scan_runs` yields the
whole records it verified in one buffer together, as one :class:`Run` of their spans in it. The
index reads the backlog so (issue 19): a field or two of each record, with no copy of its body
and no objects made per record but the fields.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from .. import record
from ..errors import CorruptRecord

if TYPE_CHECKING:
    from .log import Log

CHUNK = 1 << 20  # the most a segment reader reads at once
FIRST_CHUNK = 1 << 16  # its first read; each next one doubles, up to CHUNK
RESERVE = 1 << 16  # zero fill written past the records whenever a write extends a segment
_ZEROS = bytes(RESERVE)  # compared with, sliced: never longer than this


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


class Run(NamedTuple):
    """Whole, verified records that lie end to end in ``buf``, a window of segment ``segment``
    that starts at byte ``base`` of it.

    Each span is (offset of the record in the segment, start and end of its body in ``buf``,
    kind, signer as in :class:`record.Frame`): the record ends at byte ``base + end``.
    """

    segment: int
    buf: bytes
    base: int
    spans: list[tuple[int, int, int, int, int]]


class Damage(NamedTuple):
    """Bytes ``[pos.offset, end)`` of one segment are not records, and records follow them."""

    pos: Position
    end: int
    reason: str


class Sealed(NamedTuple):
    """Segment ``pos.segment`` was read to its end and a later one exists: go on at ``next``."""

    pos: Position
    next: Position


class Tail(NamedTuple):
    """The last segment ends in an incomplete record at ``pos``: a write in progress, or torn."""

    pos: Position
    reason: str


ScanItem = Entry | Damage | Sealed | Tail
RunItem = Run | Damage | Sealed | Tail


def end(self: Log) -> Position:
    """Where the log's records end now (a snapshot; producers may append right after)."""
    segments = self.segments()
    if not segments:
        return Position(1, 0)
    with _reader(self, segments[-1]) as reader:
        return Position(segments[-1], reader.size)


def has_more(self: Log, pos: Position) -> bool:
    """Cheap check: is there anything in the log past ``pos``?

    One pread when a record (or part of one) is there; when zero fill is, a read of the
    rest of it (at most RESERVE bytes, unless power was lost during a large write).
    """
    try:
        with self._read_lock:
            # No recheck (a stat): compaction replaces only sealed segments, and after one
            # of those a later segment exists, so the answer is True either way.
            fd = _read_fd(self, pos.segment, recheck=False)
            if not _zeros_only(fd, pos.offset):
                return True
    except FileNotFoundError:
        pass
    return any(s > pos.segment for s in self.segments())


def _reader(self: Log, segment: int) -> _SegmentReader:
    return _SegmentReader(self.path(segment), self._max_body, self._key, self._verify)


def _read_fd(self: Log, segment: int, recheck: bool) -> int:
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


def scan(self: Log, start: Position) -> Iterator[ScanItem]:
    """Yield every record, damaged range and (last) incomplete tail from ``start`` on."""
    for item in scan_runs(self, start):
        if type(item) is Run:
            segment, buf, base, spans = item
            for offset, start_, end_, kind, signer in spans:
                yield Entry(Position(segment, offset),
                            record.Frame(kind, buf[start_:end_], base + end_ - offset, signer))
        else:
            yield item


def scan_runs(self: Log, start: Position) -> Iterator[RunItem]:
    """What :func:`scan` yields, each record in a :class:`Run` of records read together."""
    segment, offset = start.segment, start.offset
    while True:
        later = [s for s in self.segments() if s > segment]  # listed before the size is read
        try:
            reader = _reader(self, segment)
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


def _zeros_only(fd: int, start: int) -> bool:
    """Does the file hold only zeros from ``start`` to its end? Reads a page first: usually
    the answer is no and the first bytes tell. No stat: see log_append._writable_segment."""
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
    change time, and the fdatasync after that write commit the inode
    (log_append._writable_segment)."""
    return os.lseek(fd, 0, os.SEEK_END)


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

    def items(self, segment: int, offset: int, *, sealed: bool) -> Iterator[RunItem]:
        """Runs of records from ``offset``; damage only once a whole record follows it.

        In the newest segment, bad bytes that no whole record follows (zeros, then a frame that
        fails its checksum, say) are all the tail, from the first of them: the index never covers
        them, and a writer, which writes after the last non-zero byte, never writes before what
        the index covers (log_append._writable_segment).

        A record is checked by :func:`record.verified` (every check of :func:`record.decode`,
        copying nothing) for the common case: one signed with the current key, or unsigned where
        no key is given. Any other (an old key's, damage, the end of the buffer) goes to
        ``decode``, which tells it apart. A run is yielded before the buffer changes.
        """
        pos = offset
        least = record.HEADER_SIZE + record.MAC_SIZE
        pending: list[Damage] = []  # damaged ranges not yet followed by a whole record
        spans: list[tuple[int, int, int, int, int]] = []
        key, max_body, verified = self._key, self._max_body, record.verified
        buf, view = self._buf, memoryview(self._buf)
        while pos < self.size:
            i = pos - self._base
            if i < 0 or i + least > len(buf):  # inline: most records are in the window
                if spans:
                    yield Run(segment, buf, self._base, spans)
                    spans = []
                i = self._window(pos, least)
                buf, view = self._buf, memoryview(self._buf)
            found = verified(buf, view, i, key, max_body)
            if found is not None:
                if pending:
                    yield from pending
                    pending.clear()
                kind, start, end = found
                spans.append((pos, start, end, kind, 0))
                pos += end - i
                continue
            try:
                frame = record.decode(buf, i, key=key, max_body=max_body,
                                      old_keys=self._old_keys, any_signer=self._any_signer)
            except record.Incomplete as exc:
                if spans:
                    yield Run(segment, buf, self._base, spans)
                    spans = []
                need = exc.needed or record.HEADER_SIZE
                if pos + need <= self.size and len(buf) - i < need:
                    self._window(pos, need)
                    buf, view = self._buf, memoryview(self._buf)
                    continue
                yield from self._ending(Position(segment, pos), pending, sealed,
                                        "incomplete record at the end of the segment")
                return
            except record.Damaged as exc:
                if spans:
                    yield Run(segment, buf, self._base, spans)
                    spans = []
                reason = str(exc)
                if not any(buf[i:i + record.HEADER_SIZE]):
                    reason = "zero bytes where a record should start"  # a lost or foreign write
                nxt = self._resync(pos + 1)
                buf, view = self._buf, memoryview(self._buf)
                if nxt is None:
                    yield from self._ending(Position(segment, pos), pending, sealed, reason)
                    return
                pending.append(Damage(Position(segment, pos), nxt, reason))
                pos = nxt
                continue
            if pending:
                yield from pending
                pending.clear()
            end = i + frame.size
            spans.append((pos, end - len(frame.body), end, frame.kind, frame.signer))
            pos += frame.size
        if spans:
            yield Run(segment, buf, self._base, spans)

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
