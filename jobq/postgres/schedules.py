"""A queue's periodic schedules in PostgreSQL: rows of ``jobq_schedules`` (schema version 3).

Each call is one statement in its own transaction; ``advance`` is an ``UPDATE ... WHERE
next_at = expected``, which PostgreSQL re-checks on the row's newest version after waiting for
a concurrent writer, so of two workers firing one time only one moves the schedule on. The ``cron`` column holds
:attr:`Schedule.when` (the expression, or "every 5m" for an interval).
"""

from __future__ import annotations

from typing import Any

from ..schedule import Schedule, Stored, read_stored
from .db import Db

_PUT = ("INSERT INTO jobq_schedules AS s (queue, name, cron, tz, spec, next_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (queue, name) DO UPDATE SET spec = excluded.spec, cron = excluded.cron,"
        " tz = excluded.tz, next_at = CASE WHEN s.cron = excluded.cron AND s.tz = excluded.tz"
        " THEN s.next_at ELSE excluded.next_at END")


class PgSchedules:
    """:class:`jobq.engine.Schedules` of one named queue."""

    def __init__(self, db: Db, queue: str) -> None:
        self._db = db
        self._queue = queue

    def put(self, schedule: Schedule, next_at: float) -> None:
        self._db.execute(_PUT, (self._queue, schedule.name, schedule.when, schedule.tz,
                                schedule.to_json(), next_at), doing="store a schedule")

    def remove(self, name: str) -> bool:
        return bool(self._db.execute(
            "DELETE FROM jobq_schedules WHERE queue = %s AND name = %s RETURNING name",
            (self._queue, name), doing="remove a schedule"))

    def all(self) -> list[Stored]:
        return read_stored(self._rows())

    def unreadable(self) -> list[tuple[str, str]]:
        bad: list[tuple[str, str]] = []
        read_stored(self._rows(), bad)
        return bad

    def _rows(self) -> Any:
        return self._db.execute("SELECT name, spec, next_at, last_job FROM jobq_schedules"
                                " WHERE queue = %s ORDER BY name", (self._queue,),
                                doing="read the schedules")

    def advance(self, name: str, expected_next: float, new_next: float,
                last_job: str | None = None) -> bool:
        return bool(self._db.execute(
            "UPDATE jobq_schedules SET next_at = %s, last_job = coalesce(%s, last_job)"
            " WHERE queue = %s AND name = %s AND next_at = %s RETURNING name",
            (new_next, last_job, self._queue, name, expected_next), doing="advance a schedule"))
