"""``jobq verify`` on a PostgreSQL queue: the schema, every record, every row and snapshot.

- the schema: the version, and every table, column and index jobq makes
  (:mod:`jobq.postgres.schema_check`);
- every record of jobq_payloads: its frame verifies (checksums, size, signature with the
  queue's key), it is the record of its own job, and it loads with today's classes. A job not
  finished whose record is damaged or missing can never run: it is named (``jobs to run``);
- every row: a job is in one table, its status belongs there (finished ones only in jobq_done),
  a running one has its owner and claim token, and no record or snapshot is left of a job that
  is gone;
- every snapshot loads (its signature checked first, :class:`jobq.codec.SnapshotCodec`) into a
  JobState of its own job; a finished job's says the status its row says (an unfinished job's
  may lag behind its row: claims change only the row, see :mod:`jobq.postgres.jobs`).

Unlike a queue directory's log, whose torn tail or damaged range is expected after a crash and
passes when no job to run depends on it, a database does not tear its rows: any record that
does not verify was changed behind jobq's back, and fails the run.

Rows are read a page at a time in job id order (keyset pagination on the primary keys), each
page one statement in its own short transaction: a long verify never holds back vacuum. A check
that relates tables is made within one statement, so jobs that move meanwhile are not reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import job_record, record
from ..codec import SnapshotCodec
from ..errors import JobqError
from ..pickling import PickleRules
from ..state import FINISHED, JobState, Status
from ..verify_report import VerifyReport
from . import schema_check
from .db import Db
from .url import PgLocation

PAGE = 500
_PAYLOAD = "EXISTS (SELECT 1 FROM jobq_payloads p WHERE p.queue = t.queue AND p.job_id = t.job_id)"
_RECORDS = (
    "SELECT t.job_id, t.frame, j.status, d.status FROM jobq_payloads t"
    " LEFT JOIN jobq_jobs j ON j.queue = t.queue AND j.job_id = t.job_id"
    " LEFT JOIN jobq_done d ON d.queue = t.queue AND d.job_id = t.job_id"
    " WHERE t.queue = %s AND t.job_id > %s ORDER BY t.job_id LIMIT %s")
_HOT = (
    "SELECT t.job_id, t.status, t.owner, t.token, s.blob, " + _PAYLOAD + " FROM jobq_jobs t"
    " LEFT JOIN jobq_snapshots s ON s.queue = t.queue AND s.job_id = t.job_id"
    " WHERE t.queue = %s AND t.job_id > %s ORDER BY t.job_id LIMIT %s")
_DONE = (
    "SELECT t.job_id, t.status, t.owner, t.token, t.blob, " + _PAYLOAD + " FROM jobq_done t"
    " WHERE t.queue = %s AND t.job_id > %s ORDER BY t.job_id LIMIT %s")
_LOST_SNAPSHOTS = (
    "SELECT t.job_id FROM jobq_snapshots t WHERE t.queue = %s AND t.job_id > %s"
    " AND NOT EXISTS (SELECT 1 FROM jobq_jobs j WHERE j.queue = t.queue AND j.job_id = t.job_id)"
    " ORDER BY t.job_id LIMIT %s")


class Checker:
    """One run of verify over one queue, filling one report."""

    def __init__(self, db: Db, loc: PgLocation, codec: SnapshotCodec, key: bytes | None,
                 max_body: int, rules: PickleRules) -> None:
        self.db, self.loc, self.codec = db, loc, codec
        self.key, self.max_body, self.rules = key, max_body, rules
        self.report = VerifyReport(records_name="records")
        self.where = f"{loc.location} jobq_payloads"

    def run(self) -> VerifyReport:
        self.report.schema = schema_check.problems(self.loc)
        if self.report.schema:
            return self.report  # the rows cannot be read as jobq's
        for row in self._pages(_RECORDS):
            self._record(*row)
        for row in self._pages(_HOT):
            self._row(*row, finished=False)
        for row in self._pages(_DONE):
            self._row(*row, finished=True)
        for job_id, in self._pages(_LOST_SNAPSHOTS):
            self.report.rows_failed += 1
            self.report.failed("row", f"job {job_id}", "a snapshot in jobq_snapshots of no"
                               " unfinished job")
        return self.report

    def _pages(self, sql: str) -> Iterator[tuple[Any, ...]]:
        after = ""
        while True:
            rows = self.db.execute(sql, (self.loc.queue, after, PAGE), doing="verify the queue")
            yield from rows
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def _record(self, job_id: str, frame: bytes, hot: str | None, done: str | None) -> None:
        report = self.report
        if hot is None and done is None:
            report.records_failed += 1
            report.failed("record", f"job {job_id}", "a record in jobq_payloads of no job")
            return
        if hot is not None and done is not None:
            report.rows_failed += 1
            report.failed("row", f"job {job_id}", "in both jobq_jobs and jobq_done")
        if hot is not None:
            report.jobs_checked += 1
        data = bytes(frame)
        try:
            found = record.decode(data, 0, key=self.key, max_body=self.max_body)
            if found.size != len(data):
                raise record.Damaged(f"{len(data) - found.size} bytes after the record")
            holds = job_record.decode_meta(found.body)[0].job_id
            if holds != job_id:
                raise record.Damaged(f"the record there is job {holds!r}'s")
        except (record.Damaged, record.Incomplete, JobqError) as exc:
            reason = str(exc) if not isinstance(exc, record.Incomplete) else "truncated record"
            report.records_failed += 1
            report.failed("record", f"job {job_id}", f"damaged record: {reason}")
            if hot is not None:
                report.cannot_read(job_id, hot, self.where, job_id, reason, None)
            return
        try:
            job_record.load_payload(found.body, self.rules, job_id)
        except JobqError as exc:
            report.records_failed += 1
            report.failed("record", f"job {job_id}", exc)
        else:
            report.records_ok += 1

    def _row(self, job_id: str, status: str, owner: str | None, token: int,
             blob: bytes | None, has_record: bool, *, finished: bool) -> None:
        report = self.report
        problem = _row_problem(status, owner, token, finished)
        if problem:
            report.rows_failed += 1
            report.failed("row", f"job {job_id}", problem)
        else:
            report.rows_ok += 1
        if not has_record:
            if finished:
                report.records_failed += 1
                report.failed("record", f"job {job_id}", "no record in jobq_payloads")
            else:
                report.jobs_checked += 1
                report.cannot_read(job_id, status, self.where, job_id, "no record", None)
        if blob is not None:
            self._snapshot(job_id, bytes(blob), status if finished else None)

    def _snapshot(self, job_id: str, blob: bytes, status: str | None) -> None:
        try:
            state = self.codec.decode(job_id, blob)
            if not isinstance(state, JobState):
                raise JobqError(f"snapshot holds a {type(state).__name__}, not a JobState")
            if state.job_id != job_id:
                raise JobqError(f"snapshot of job {state.job_id!r} stored for job {job_id!r}")
            if status is not None and state.status.value != status:
                raise JobqError(f"snapshot says {state.status.value}, its row {status}")
        except JobqError as exc:
            self.report.snapshots_failed += 1
            self.report.failed("snapshot", f"job {job_id}", exc)
        else:
            self.report.snapshots_ok += 1


def _row_problem(status: str, owner: str | None, token: int, finished: bool) -> str | None:
    """What is wrong with a job's row, in the table it is in; None if nothing is."""
    try:
        known = Status(status)
    except ValueError:
        return f"unknown status {status!r}"
    if (known in FINISHED) != finished:
        table = "jobq_done" if finished else "jobq_jobs"
        return f"a {'' if known in FINISHED else 'un'}finished job ({status}) in {table}"
    if known is Status.RUNNING and (not owner or token < 1):
        return f"running without {'an owner' if not owner else 'a claim token'}"
    return None
