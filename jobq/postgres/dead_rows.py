"""A worker's look at whether the server clears the dead row versions of ``jobq_jobs``.

Every claim and settle updates rows and leaves their old versions dead, for autovacuum to clear
(a page's pruning frees their space, but their index entries stay until a VACUUM).
When it does not (autovacuum off for the server or the table, or the xmin horizon held back by a
long transaction, a session idle in a transaction or a replica's ``hot_standby_feedback``), they
pile up and claims slow down by the minute, with nothing in jobq's own figures to say why (see
"Tables, vacuum and bloat" in docs/postgres.md). jobq does not VACUUM (an operator may have
reasons to keep it off); a worker's upkeep says so in its log, once every :data:`EVERY` seconds
while it is so.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

from ..errors import JobqError
from .db import Db

EVERY = 600.0  # seconds between two looks of a worker
DEAD_ROWS = 100_000  # dead versions (or, autovacuum off, updates and deletes) worth a warning
VACUUM_AGE = 86_400.0  # autovacuum off: a manual VACUUM at least this often says someone sees to it

# The table's dead and live row counts, its updates and deletes (the server's statistics: zero if
# track_counts is off), whether autovacuum may run on it, the seconds since it was last vacuumed
# and when (NULL: never). Dead versions that a page's pruning removed are no longer counted, though
# their index entries stay until a VACUUM: with autovacuum off, the updates and deletes tell more.
_LOOK = ("SELECT s.n_dead_tup, s.n_live_tup, s.n_tup_upd + s.n_tup_del,"
         " current_setting('autovacuum')::bool"
         " AND NOT coalesce('autovacuum_enabled=false' = ANY(c.reloptions), false),"
         " extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum))::float8,"
         " extract(epoch FROM greatest(s.last_vacuum, s.last_autovacuum))::float8"
         " FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
         " WHERE s.relid = 'jobq_jobs'::regclass")


class DeadRows(NamedTuple):
    """What the server says of ``jobq_jobs``, when its dead rows are worth a warning."""

    dead: int
    live: int
    changes: int  # updates and deletes since its last VACUUM if a watch saw it, else since the
    # server's statistics began
    autovacuum: bool  # autovacuum may run on the table
    vacuumed_ago: float | None  # seconds since its last VACUUM (None: never)
    vacuumed_at: float | None = None  # when (the server's epoch seconds)

    def message(self) -> str:
        if not self.autovacuum:
            last = ("was never vacuumed" if self.vacuumed_ago is None else
                    f"was last vacuumed {self.vacuumed_ago / 3600:.0f} h ago")
            return (f"autovacuum is off for jobq_jobs (the server's or the table's setting), and"
                    f" it {last}, after {self.changes:,} updates and deletes: its dead row"
                    " versions pile up and claims slow down; run VACUUM jobq_jobs on a schedule,"
                    " or turn autovacuum on (docs/postgres.md, 'Tables, vacuum and bloat')")
        return (f"jobq_jobs holds {self.dead:,} dead row versions ({self.live:,} live) that"
                " autovacuum does not clear: a long transaction, a session idle in a transaction"
                " or a replica's hot_standby_feedback holds them back, and claims slow down as"
                " they pile up (docs/postgres.md, 'Tables, vacuum and bloat')")


def judge(found: DeadRows, dead_rows: int = DEAD_ROWS, vacuum_age: float = VACUUM_AGE) -> bool:
    """Is ``found`` worth a warning? Autovacuum off: many updates and deletes, and no VACUUM in
    the last ``vacuum_age`` seconds. On: more dead versions than live ones, and many (pruning
    could not remove them either: something holds the horizon back)."""
    if not found.autovacuum:
        return found.changes >= dead_rows and (found.vacuumed_ago is None
                                              or found.vacuumed_ago > vacuum_age)
    return found.dead >= dead_rows and found.dead > found.live


def read(db: Db) -> DeadRows | None:
    """What the server's statistics say of ``jobq_jobs`` (None: it has none)."""
    rows = db.execute(_LOOK, doing="read the statistics of jobq_jobs")
    if not rows:
        return None
    dead, live, changes, autovacuum, ago, at = rows[0]
    return DeadRows(int(dead or 0), int(live or 0), int(changes or 0), bool(autovacuum), ago, at)


def look(db: Db, dead_rows: int = DEAD_ROWS) -> DeadRows | None:
    """What the server's statistics say of ``jobq_jobs``, if :func:`judge` finds it worth a
    warning; None otherwise."""
    found = read(db)
    return found if found is not None and judge(found, dead_rows) else None


class DeadRowsWatch:
    """A look every ``every`` seconds from a worker's upkeep; a warning event when it finds
    many dead rows. Errors are logged, never raised (jobs come first).

    The server counts updates and deletes since its statistics began, not since the last
    VACUUM: once a look sees a newer VACUUM than the look before it, the watch counts from the
    figure it read then. A queue vacuumed by hand every few days is then warned of a day after a
    VACUUM only if it took that many changes since, not at once for all those before.
    """

    def __init__(self, db: Db, logger: Any, every: float = EVERY,
                 dead_rows: int = DEAD_ROWS, vacuum_age: float = VACUUM_AGE) -> None:
        self._db, self._log, self._every, self._dead_rows = db, logger, every, dead_rows
        self._vacuum_age = vacuum_age
        self._next = time.monotonic() + min(every, 60.0)  # not at once: a worker starting
        self._vacuumed_at: float | None = None  # the last VACUUM the looks saw
        self._changes_then = 0  # the changes the look that first saw it read (0: none seen)
        self._looked = False

    def step(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        try:
            found = read(self._db)
        except (JobqError, OSError) as exc:
            self._log.warning("storage.dead_rows_unreadable", error=str(exc))
            return
        if found is None:
            return
        if self._looked and found.vacuumed_at != self._vacuumed_at:  # vacuumed since
            self._changes_then = found.changes
        elif found.changes < self._changes_then:  # the server's statistics were reset
            self._changes_then = 0
        self._looked, self._vacuumed_at = True, found.vacuumed_at
        found = found._replace(changes=max(0, found.changes - self._changes_then))
        if judge(found, self._dead_rows, self._vacuum_age):
            self._log.warning("storage.dead_rows", table="jobq_jobs", dead=found.dead,
                              live=found.live, changes=found.changes,
                              autovacuum=found.autovacuum, vacuumed_ago=found.vacuumed_ago,
                              message=found.message())
