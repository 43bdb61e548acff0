"""What ``jobq verify`` found, the same report for every engine (the CLI prints it).

Each engine fills the counts it has: a queue directory its log records, damaged ranges and
old-key counts; a PostgreSQL queue its records, rows and schema (see :mod:`jobq.local.verify`
and :mod:`jobq.postgres.verify`).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

MAX_EXAMPLES = 20
MAX_LISTED = 1_000  # unreadable jobs and damaged ranges listed one by one (all are counted)


@dataclass
class VerifyReport:
    """Counts of what loaded and what did not, with the causes and a few examples of each."""

    records_ok: int = 0
    records_failed: int = 0
    snapshots_ok: int = 0
    snapshots_failed: int = 0
    jobs_checked: int = 0  # jobs not finished whose record was looked for
    jobs_unreadable: int = 0  # of those, the ones whose record cannot be read
    unreadable: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_LISTED
    damaged_ranges: int = 0  # bytes in the log that are not records (already quarantined or not)
    ranges_under_jobs: int = 0  # of those, the ones a job not finished points into
    ranges: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_LISTED
    torn_tail: bool = False
    old_key_records: int = 0  # live records an old key signed (readable; `jobq rekey` re-signs)
    old_key_snapshots: int = 0
    causes: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[dict[str, str]] = field(default_factory=list)
    records_name: str = "log records"  # what the engine's records are, for the printed report
    rows_ok: int = 0  # job rows whose columns agree (an engine with rows: PostgreSQL)
    rows_failed: int = 0
    schema: list[str] = field(default_factory=list)  # how the tables differ from jobq's

    @property
    def ok(self) -> bool:
        return not (self.records_failed or self.snapshots_failed or self.jobs_unreadable
                    or self.rows_failed or self.schema)

    def failed(self, kind: str, where: str, exc: BaseException | str) -> None:
        cause = f"{kind}: {_first_line(exc)}"
        self.causes[cause] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"kind": kind, "where": where, "error": str(exc)})

    def cannot_read(self, job_id: str, status: str, file: str, offset: int | str, reason: str,
                    saved_to: str | None) -> None:
        self.jobs_unreadable += 1
        if len(self.unreadable) < MAX_LISTED:
            self.unreadable.append({"job_id": job_id, "status": status, "file": file,
                                    "offset": offset, "reason": reason, "saved_to": saved_to})

    def damaged(self, file: str, offset: int, end: int | None, reason: str, jobs: int,
                saved_to: str | None) -> None:
        self.damaged_ranges += 1
        self.ranges_under_jobs += bool(jobs)
        if len(self.ranges) < MAX_LISTED:
            self.ranges.append({"file": file, "offset": offset, "end": end, "reason": reason,
                                "jobs": jobs, "saved_to": saved_to})


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
