"""The PostgreSQL engine's reads of jobs (:class:`jobq.engine.Engine`): one statement each,
through :mod:`jobq.postgres.reading`, so each sees every commit made before it started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import listing
from ..codec import SnapshotCodec
from ..state import JobState, Status
from . import jobs, reading, settle, totals
from .db import Db
from .jobs import not_found


class JobReads:
    """The engine's reading methods, for PgEngine."""

    _db: Db
    _codec: SnapshotCodec
    _queue: str

    def exists(self, job_id: str) -> bool:
        return reading.find(self._db, self._queue, job_id, "1") is not None

    def status(self, job_id: str) -> Status:
        found = reading.find(self._db, self._queue, job_id, "status")
        if found is None:
            raise not_found(job_id)
        return Status(found[0])

    def get(self, job_id: str) -> JobState:
        with self._db.errors("read a job"):
            return jobs.load(self._db.conn, self._codec, self._queue, job_id)[0]

    def row(self, job_id: str) -> dict[str, Any]:
        return reading.row(self._db, self._queue, job_id)

    def rows(self, status: Status | None = None, limit: int = 100,
             newest_first: bool = True, *, after: str | None = None, task: str | None = None,
             id_contains: str | None = None, group: str | None = None,
             scan_limit: int | None = None) -> list[dict[str, Any]]:
        id_contains = listing.check_page(limit, id_contains, scan_limit, group)
        return reading.rows(self._db, self._queue, status, limit, newest_first, after=after,
                            task=task, id_contains=id_contains, group=group,
                            scan_limit=scan_limit)

    def rough_counts(self) -> dict[str, int]:
        return reading.rough_counts(self._db, self._queue, listing.ROUGH_CAP)

    def oldest_due(self) -> float | None:
        now = self.now()
        run_at = reading.oldest_due(self._db, self._queue, now)
        return None if run_at is None else max(0.0, now - run_at)

    def finish_times(self, status: Status, since: float, limit: int) -> list[float]:
        return reading.finish_times(self._db, self._queue, status, since, limit)

    def next_waiting(self, now: float) -> dict[Status, float]:
        return reading.next_waiting(self._db, self._queue, now)

    def totals(self) -> dict[tuple[str, str], float]:
        return totals.read(self._db, self._queue)

    def job_ids(self, status: Status | None = None) -> Iterator[str]:
        return reading.job_ids(self._db, self._queue, status)

    def ids_starting_with(self, prefix: str, limit: int) -> list[str]:
        return reading.ids_starting_with(self._db, self._queue, prefix, limit)

    def counts(self) -> dict[str, int]:
        return reading.counts(self._db, self._queue)

    def waiting(self, now: float) -> dict[tuple[Status, bool], float]:
        return reading.waiting(self._db, self._queue, now)

    def now(self) -> float:
        with self._db.errors("read the server's clock"):
            return settle.server_now(self._db.conn)
