"""``verify``: load every log record and every state snapshot with today's classes.

This is the check to run before a deploy that changes a job class (or moves one): a record that
no longer unpickles or migrates is reported with its cause, counted, and the exit status says so.
It only reads: nothing is quarantined, cut or rewritten.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from . import job_record
from .errors import JobqError
from .log import Damage, Entry, Position, Tail
from .queue import Queue
from .state import JobState

MAX_EXAMPLES = 20


@dataclass
class VerifyReport:
    """Counts of what loaded and what did not, with the causes and a few examples of each."""

    records_ok: int = 0
    records_failed: int = 0
    snapshots_ok: int = 0
    snapshots_failed: int = 0
    damaged_ranges: int = 0  # bytes in the log that are not records (already quarantined or not)
    torn_tail: bool = False
    causes: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.records_failed or self.snapshots_failed)

    def failed(self, kind: str, where: str, exc: BaseException) -> None:
        cause = f"{kind}: {_first_line(exc)}"
        self.causes[cause] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append({"kind": kind, "where": where, "error": str(exc)})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def verify(queue: Queue) -> VerifyReport:
    report = VerifyReport()
    _verify_log(queue, report)
    _verify_snapshots(queue, report)
    return report


def _verify_log(queue: Queue, report: VerifyReport) -> None:
    rules = queue.config.rules
    for item in queue.log.scan(Position(1, 0)):
        if isinstance(item, Entry):
            where = f"{queue.log.path(item.pos.segment)}:{item.pos.offset}"
            try:
                job_record.load_payload(item.frame.body, rules)
            except JobqError as exc:
                report.records_failed += 1
                report.failed("record", where, exc)
            else:
                report.records_ok += 1
        elif isinstance(item, Damage):
            report.damaged_ranges += 1
        elif isinstance(item, Tail):
            report.torn_tail = True


def _verify_snapshots(queue: Queue, report: VerifyReport) -> None:
    shelf = queue.store.shelf
    for raw_key in list(shelf.dict.keys()):
        key = raw_key.decode("utf-8", "replace")
        try:
            state = shelf.decode(key, shelf.dict[raw_key])
            if state is not None and not isinstance(state, JobState):  # None: a new job's marker
                raise JobqError(f"snapshot holds a {type(state).__name__}, not a JobState")
        except JobqError as exc:
            report.snapshots_failed += 1
            report.failed("snapshot", f"job {key}", exc)
        else:
            report.snapshots_ok += 1
