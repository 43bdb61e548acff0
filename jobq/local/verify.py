"""``verify``: can every job still to run be read, and does every record and snapshot load?

Run it before a deploy that changes a job class (or moves one): a record that no longer unpickles
or migrates is reported with its cause. Run it too when a disk or a copy gives reason to doubt the
files: a job that has not finished but whose record is damaged (or that points where no record
starts) can never run, and is named with its file and offset. Damage that no such job depends on
(quarantined when it was indexed, or under finished or purged jobs) is reported, and passes.

The log is read once, in order, alongside the jobs that have not finished, which the index gives
page by page in the same order: the cost grows with the log, and the memory does not. It only
reads: nothing is quarantined, cut or rewritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import job_record
from . import damage, snapshots
from ..errors import CorruptRecord, JobqError
from .log import Damage, Entry, Log, Position, Sealed, Tail
from ..state import JobState, Status
from . import rekey
from ..verify_report import VerifyReport

if TYPE_CHECKING:
    from .parts import Parts

UNFINISHED = tuple(s for s in Status if not s.finished)
NO_RECORD = "no record starts there"

Job = tuple[Position, str, Status]  # payload position, job id, status


def verify(engine: Parts) -> VerifyReport:
    """Read every record and snapshot; see the module docstring."""
    report = VerifyReport()
    _verify_log(engine, report)
    _verify_snapshots(engine, report)
    return report


class _Pending:
    """The jobs not finished, in log order, taken as the scan of the log passes their positions.

    Jobs indexed after ``limit`` (the position the index covered when verify started) are left
    for the next run: the scan may have ended before their records were appended.
    """

    def __init__(self, jobs: Iterator[Job], limit: Position) -> None:
        self._jobs, self._limit = jobs, limit
        self._last: Position | None = None
        self._next = self._advance()

    def _advance(self) -> Job | None:
        for job in self._jobs:
            if job[0] >= self._limit:
                return None
            if job[0] != self._last:  # listed twice: its status changed between two pages
                self._last = job[0]
                return job
        return None

    def before(self, pos: Position) -> Iterator[Job]:
        """Take every job whose record starts before ``pos``."""
        while self._next is not None and self._next[0] < pos:
            job, self._next = self._next, self._advance()
            yield job

    def rest(self) -> Iterator[Job]:
        """Take every job left."""
        while self._next is not None:
            job, self._next = self._next, self._advance()
            yield job

    def at(self, pos: Position) -> Job | None:
        """Take the job whose record starts at ``pos``, if there is one."""
        if self._next is None or self._next[0] != pos:
            return None
        job, self._next = self._next, self._advance()
        return job


def _verify_log(engine: Parts, report: VerifyReport) -> None:
    log_, rules = engine.log, engine.config.rules
    copies = damage.copies(engine.store)
    covered = engine.store.covered()
    pending = _Pending(engine.store.positions(UNFINISHED), covered)

    def unread(jobs: Iterator[Job], reason: str) -> int:
        count = 0
        for job in jobs:
            report.jobs_checked += 1
            _cannot_read(report, job, log_.path(job[0].segment), reason, copies.get(job[0]))
            count += 1
        return count

    for item in log_.scan(Position(1, 0)):
        # Positions inside the previous record: the index and the log disagree.
        unread(pending.before(item.pos), NO_RECORD)
        if isinstance(item, Entry):
            job = pending.at(item.pos)
            if job is not None:
                report.jobs_checked += 1
                holds = _job_id_of(item.frame.body)
                if holds != job[1]:
                    _cannot_read(report, job, log_.path(job[0].segment),
                                 f"the record there is job {holds!r}'s", None)
            _load(log_, item, rules, report)
            if item.frame.signer and (item.pos >= covered or rekey.live(engine, item.pos)):
                report.old_key_records += 1
        elif isinstance(item, Damage):
            jobs = unread(pending.before(Position(item.pos.segment, item.end)), item.reason)
            report.damaged(log_.path(item.pos.segment), item.pos.offset, item.end, item.reason,
                           jobs, copies.get(item.pos))
        elif isinstance(item, Sealed):
            unread(pending.before(item.next), NO_RECORD)  # past the end of the segment
        elif isinstance(item, Tail):
            report.torn_tail = True
            jobs = unread(pending.before(Position(item.pos.segment + 1, 0)), item.reason)
            if jobs:  # a tail no job depends on may be a write in progress: not damage yet
                report.damaged(log_.path(item.pos.segment), item.pos.offset, None,
                               item.reason, jobs, copies.get(item.pos))
    unread(pending.rest(), NO_RECORD)  # the log ends before their records


def _cannot_read(report: VerifyReport, job: Job, file: str, reason: str,
                 saved_to: str | None) -> None:
    pos, job_id, status = job
    report.cannot_read(job_id, status.value, file, pos.offset, reason, saved_to)


def _job_id_of(body: bytes) -> str | None:
    try:
        return job_record.decode_meta(body)[0].job_id
    except CorruptRecord:
        return None


def _load(log_: Log, item: Entry, rules: Any, report: VerifyReport) -> None:
    try:
        job_record.load_payload(item.frame.body, rules)
    except JobqError as exc:
        report.records_failed += 1
        report.failed("record", f"{log_.path(item.pos.segment)}:{item.pos.offset}", exc)
    else:
        report.records_ok += 1


def _verify_snapshots(engine: Parts, report: VerifyReport) -> None:
    shelf, old_keys = engine.store.shelf, bool(engine.config.old_secret_keys)
    for key, raw in rekey.snapshots(engine):  # page by page: never every key in memory at once
        if _check_snapshot(shelf, key, raw, report) and old_keys and shelf.signer(key, raw):
            report.old_key_snapshots += 1


def _check_snapshot(shelf: Any, key: str, raw: bytes, report: VerifyReport) -> bool:
    """Load one snapshot, counting it as loaded or failed; True if it loaded."""
    try:
        state = shelf.decode(key, raw)
        if state is not None and not isinstance(state, JobState):  # None: a new job's marker
            snapshots.from_plain(key, "", 0.0, state)  # a plain success's tuple, or raises
    except JobqError as exc:
        report.snapshots_failed += 1
        report.failed("snapshot", f"job {key}", exc)
        return False
    report.snapshots_ok += 1
    return True
