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

This module is the log's one public face: :class:`Log` holds the state, and its methods are the
functions of :mod:`.log_read`, :mod:`.log_fetch`, :mod:`.log_append` and :mod:`.log_repair`, one
module per concept.
"""

from __future__ import annotations

import os
import re
import threading

from . import log_append, log_fetch, log_read, log_repair
from .. import record
from ._flock import ProcessLock, fork_generation
from .log_append import _WriteHandle
# Imported from here by the rest of jobq (and by tests): the log has one public module.
from .log_read import RESERVE, Damage, Entry, Position, Run, ScanItem, Sealed, Tail

__all__ = ["RESERVE", "Damage", "Entry", "Log", "Position", "Run", "ScanItem", "Sealed", "Tail",
           "segment_name"]

_SEGMENT_RE = re.compile(r"^(\d{12})\.log$")


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

    @property
    def key(self) -> bytes | None:
        """The key that signs new records (and verifies first)."""
        return self._key

    # -- records -----------------------------------------------------------------------------

    def encode(self, kind: int, body: bytes) -> bytes:
        return record.encode(kind, body, self._key)

    def frame_header(self, kind: int, body: bytes) -> bytes:
        """What :meth:`encode` puts in front of ``body``."""
        return record.header(kind, body, self._key)

    # Each concept's methods live in its module (log_read, log_fetch, log_append, log_repair) as
    # plain functions of the Log; bound here, they are Log's methods with no call layer in between.

    end = log_read.end
    has_more = log_read.has_more
    read = log_fetch.read
    read_many = log_fetch.read_many
    scan = log_read.scan
    scan_runs = log_read.scan_runs

    append = log_append.append

    seal = log_repair.seal
    seal_stragglers = log_repair.seal_stragglers
    repair_tail = log_repair.repair_tail
    read_range = log_repair.read_range
    save_aside = log_repair.save_aside

    def close(self) -> None:
        if self._handle is not None and self._handle_generation == fork_generation():
            log_append._retire(self, self._handle)
        self._handle = None
        with self._read_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
        self._lock.close()
