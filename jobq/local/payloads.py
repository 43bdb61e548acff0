"""A claimed job's record body, read from the log: one read per batch of claims, not per job.

A worker child claims up to a hundred jobs at once, and loads each one's payload as it starts it.
Jobs enqueued together lie end to end in the log, so the records of a batch's claims are read
together, with one pread per run of nearby records (:meth:`Log.read_many`), when the batch is
claimed; each is verified then (header, checksums, signature: nothing is unpickled here), and
the job's payload is unpickled when it starts, as before (issue 19: the pread, its lock and its
descriptor lookup were a tenth of a no-op job's CPU).

A record read ahead is only a shortcut: whatever was not read so (damaged, moved by a compaction,
too far from the others) is read alone when the job starts, as it always was, and that read
says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import job_record
from ..engine import Claim
from ..errors import CorruptRecord
from .log import Log, Position


class Payloads:
    """Record bodies of this process's latest batch of claims, then of any job by its id."""

    def __init__(self, log: Log, position: Callable[[str], Position],
                 job_record_of: Callable[[str], bytes]) -> None:
        self._log = log
        self._position = position  # where the index says the job's record is
        self._record_of = job_record_of  # the body, found under the write lock (see body)
        # job id -> (position, body) of the latest batch's claims: replaced at each batch, so a
        # claim never run (handed back, reaped) is not kept beyond the next one.
        self._ahead: dict[str, tuple[Position, bytes]] = {}

    def read_ahead(self, claims: Sequence[Claim]) -> None:
        """Read the records of ``claims`` together (a batch's; one claim is read when run)."""
        ahead: dict[str, tuple[Position, bytes]] = {}
        placed = [c for c in claims if isinstance(c.ref, Position)]
        if len(placed) > 1:
            for claim, frame in zip(placed, self._log.read_many([c.ref for c in placed])):
                if frame is not None and job_record.is_record_of(frame.body, claim.job_id):
                    ahead[claim.job_id] = (claim.ref, frame.body)
        self._ahead = ahead

    def body(self, job_id: str, ref: Position | None = None) -> bytes:
        """The job's record body, verified; ``ref``, its position if known, saves the lookup.

        A record read at a position that compaction has since rewritten is another job's, or no
        record: then read again through the segment's current file, and at last where the index
        says now, under the write lock (see Store.job_record). DamagedRecord when the bytes at
        the job's own position fail their checks.
        """
        if ref is None:
            ref = self._position(job_id)
        else:
            ahead = self._ahead.pop(job_id, None)
            if ahead is not None and ahead[0] == ref:
                return ahead[1]
        for recheck in (False, True):
            try:
                frame = self._log.read(ref, recheck=recheck)
            except CorruptRecord:
                continue
            if job_record.is_record_of(frame.body, job_id):
                return frame.body
        return self._record_of(job_id)
