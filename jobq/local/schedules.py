"""A queue directory's periodic schedules: a table of the state database (store schema 4).

The table is not rebuilt from the log (schedules are not in it): a state database made again
from the log has the schedules of the workers that register them as they start, but loses
those added with ``jobq schedule add``. The ``cron`` column holds :attr:`Schedule.when` (the
expression, or "every 5m" for an interval), so a changed expression or interval restarts the
next fire time and an unchanged one keeps it.
"""

from __future__ import annotations

from ..schedule import Schedule, Stored, read_stored
from .store import Store

_PUT = ("INSERT INTO schedules (name, cron, tz, spec, next_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, cron = excluded.cron,"
        " tz = excluded.tz, next_at = CASE WHEN cron = excluded.cron AND tz = excluded.tz"
        " THEN next_at ELSE excluded.next_at END")


class LocalSchedules:
    """:class:`jobq.engine.Schedules` in the state database: each call one write transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def put(self, schedule: Schedule, next_at: float) -> None:
        with self._store.transaction() as conn:
            conn.execute(_PUT, (schedule.name, schedule.when, schedule.tz, schedule.to_json(),
                                next_at))

    def remove(self, name: str) -> bool:
        with self._store.transaction() as conn:
            return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 1

    def all(self) -> list[Stored]:
        with self._store.reading():
            rows = self._store.conn.execute(
                "SELECT name, spec, next_at, last_job FROM schedules ORDER BY name").fetchall()
        return read_stored(rows)

    def unreadable(self) -> list[tuple[str, str]]:
        with self._store.reading():
            rows = self._store.conn.execute(
                "SELECT name, spec, next_at, last_job FROM schedules ORDER BY name").fetchall()
        bad: list[tuple[str, str]] = []
        read_stored(rows, bad)
        return bad

    def advance(self, name: str, expected_next: float, new_next: float,
                last_job: str | None = None) -> bool:
        with self._store.transaction() as conn:
            return conn.execute(
                "UPDATE schedules SET next_at = ?, last_job = coalesce(?, last_job)"
                " WHERE name = ? AND next_at = ?",
                (new_next, last_job, name, expected_next)).rowcount == 1
