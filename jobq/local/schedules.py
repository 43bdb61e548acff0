"""A queue directory's periodic schedules: a table of the state database (store schema 4).

The table is not rebuilt from the log (schedules are not in it), so every change of it also
rewrites ``schedules.json`` beside the state database (atomically, in the same write lock): the
specs of every schedule. A state database made again from the log finds its table empty and the
file not: the first use of the schedules puts them back, each due at its next fire time after
now (warning ``store.schedules_restored``), so those added with ``jobq schedule add`` survive.
The ``cron`` column holds :attr:`Schedule.when` (the expression, or "every 5m" for an
interval), so a changed expression or interval restarts the next fire time and an unchanged
one keeps it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import durable
from .._logging import get_logger
from ..errors import InvalidSchedule
from .store import Store

if TYPE_CHECKING:  # only for annotations: a worker starts without jobq.schedule (issue 19)
    from ..schedule import Schedule, Stored

log = get_logger(__name__)

FILE = "schedules.json"

_PUT = ("INSERT INTO schedules (name, cron, tz, spec, next_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, cron = excluded.cron,"
        " tz = excluded.tz, next_at = CASE WHEN cron = excluded.cron AND tz = excluded.tz"
        " THEN next_at ELSE excluded.next_at END")


class LocalSchedules:
    """:class:`jobq.engine.Schedules` in the state database: each call one write transaction."""

    def __init__(self, store: Store, root: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._store, self._file, self._clock = store, os.path.join(root, FILE), clock
        self._checked = False  # restore() looked once: the table is only lost while closed

    def put(self, schedule: Schedule, next_at: float) -> None:
        self._restore_once()
        with self._store.transaction() as conn:
            conn.execute(_PUT, (schedule.name, schedule.when, schedule.tz, schedule.to_json(),
                                next_at))
            self._save(conn)

    def remove(self, name: str) -> bool:
        self._restore_once()
        with self._store.transaction() as conn:
            removed = conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 1
            self._save(conn)
            return removed

    def _save(self, conn: sqlite3.Connection) -> None:
        """Inside the write transaction that changed the table: the file of its specs."""
        specs = [r[0] for r in conn.execute("SELECT spec FROM schedules ORDER BY name")]
        durable.atomic_write(self._file, json.dumps({"version": 1, "specs": specs}).encode())

    def _restore_once(self) -> None:
        if not self._checked:
            restore(self._store, self._file, self._clock())
            self._checked = True

    def all(self) -> list[Stored]:
        self._restore_once()
        with self._store.reading():
            rows = self._store.conn.execute(
                "SELECT name, spec, next_at, last_job FROM schedules ORDER BY name").fetchall()
        if not rows:
            return []
        from ..schedule import read_stored  # once there are some (issue 19)

        return read_stored(rows)

    def unreadable(self) -> list[tuple[str, str]]:
        with self._store.reading():
            rows = self._store.conn.execute(
                "SELECT name, spec, next_at, last_job FROM schedules ORDER BY name").fetchall()
        from ..schedule import read_stored

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


def restore(store: Store, path: str, now: float) -> list[str]:
    """Put back the schedules of the file at ``path`` if the table is empty (a state database
    made again); the names put back."""
    try:
        with open(path, "rb") as f:
            specs = json.loads(f.read())["specs"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("store.schedules_file_unreadable", path=path, error=str(exc))
        return []
    if not specs:
        return []
    from ..schedule import Schedule

    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM schedules LIMIT 1").fetchone() is not None:
            return []  # whole, or another process restored it
        names = []
        for spec in specs:
            try:
                schedule = Schedule.from_json(spec)
            except (InvalidSchedule, TypeError) as exc:
                log.warning("schedule.unreadable", path=path, error=str(exc))
                continue
            conn.execute(_PUT, (schedule.name, schedule.when, schedule.tz, spec,
                                schedule.next_after(now)))
            names.append(schedule.name)
    log.warning("store.schedules_restored", path=path, schedules=names,
                consequence="their last firing's job is forgotten; each is due at its next"
                            " fire time from now")
    return names
