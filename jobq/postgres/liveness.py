"""Who works on a queue in PostgreSQL: liveness by advisory lock, records in ``jobq_workers``.

A worker's supervisor holds a session advisory lock on a connection of its own, kept idle, for
its whole life (:class:`LockHold`). The server releases a session's locks as soon as it sees
the session end: at once when its client dies (the kernel closes the socket), within the TCP
keepalive time every jobq session sets (:mod:`jobq.postgres.session`, about 25 s) when the
client's host vanishes from the network; until then leases cover it, and fencing tokens refuse
its late results. Any other process tells a dead worker by the lock not being held
(:func:`held_keys`, a look at ``pg_locks`` that takes nothing a worker could trip over). The
connection stays idle: a backend busy in a statement notices its client's death only when the
statement ends, or at its next ``client_connection_check_interval`` (PostgreSQL 14+).

A forked child closes the lock connection's socket (``fds_to_close_after_fork``) and never
finishes the session: its parent's lock must not outlive the parent, nor end with the child.

The records ``jobq workers`` shows are rows of ``jobq_workers`` (the record as JSON, as the
directory engine's ``workers/<id>.json``); a worker found dead has its row marked reaped, with
who found it and the jobs it held, and is forgotten after a day or past the 100 newest.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import psycopg

from ..errors import LivenessLost
from ..engine.workers import KEEP_DEAD, MAX_DEAD
from ..worker_info import (WorkerInfo, WorkerState, from_id, info_from_record, number, stuck,
                           worker_of)
from .db import Db, connect, storage_error
from .url import PgLocation

TAKE_TIMEOUT = 1.0  # seconds to wait for a worker id's lock (only a probe could hold it)


def lock_key(queue: str, worker: str) -> int:
    """The advisory lock key of ``worker`` on ``queue``: 64 bits of a hash (signed bigint)."""
    digest = hashlib.blake2b(f"jobq\0{queue}\0{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_ids(key: int) -> tuple[int, int]:
    """(classid, objid) under which pg_locks shows the bigint lock ``key`` (objsubid 1)."""
    return (key >> 32) & 0xFFFF_FFFF, key & 0xFFFF_FFFF


class LockHold:
    """A worker's liveness: an advisory lock held by a session of its own."""

    def __init__(self, loc: PgLocation, worker: str) -> None:
        self._loc = loc
        self._pid = os.getpid()
        self._conn = connect(loc)
        key = lock_key(loc.queue, worker)
        deadline = time.monotonic() + TAKE_TIMEOUT
        try:
            while not self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise LivenessLost(f"worker {worker}: its liveness lock on {loc.location} is"
                                       " held by another session (a worker of the same id?)")
                time.sleep(0.01)
        except psycopg.Error as exc:
            self._conn.close()
            raise storage_error(exc, loc, "take a worker's liveness lock") from exc
        except BaseException:
            self._conn.close()
            raise

    def check(self) -> None:
        """LivenessLost if the lock's session is gone: the others take this worker for dead."""
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error as exc:
            why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise LivenessLost(f"the liveness lock's connection to {self._loc.server} was lost"
                               f" ({why}): other workers take this one for dead",
                               transient=True) from exc

    def fds_to_close_after_fork(self) -> list[int]:
        return [] if self._conn.closed else [self._conn.fileno()]

    def close(self) -> None:
        """Let go of the lock, then end the session. The unlock is what frees it at once: a
        closed connection's backend lets go only when it has noticed and exited."""
        if os.getpid() != self._pid:
            return
        if not (self._conn.closed or self._conn.broken):
            try:
                self._conn.execute("SELECT pg_advisory_unlock_all()")
            except psycopg.Error:
                pass  # the session is gone already, and its locks with it
        self._conn.close()


def held_keys(db: Db) -> set[tuple[int, int]]:
    """(classid, objid) of the bigint advisory locks granted in this database now."""
    rows = db.execute("SELECT classid::bigint, objid::bigint FROM pg_locks"
                      " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
                      " AND database = (SELECT oid FROM pg_database"
                      " WHERE datname = current_database())", doing="read the workers' locks")
    return {(int(c), int(o)) for c, o in rows}


class PgWorkers:
    """:class:`jobq.engine.Workers` on PostgreSQL."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._queue = db.loc.queue

    def hold(self, worker: str) -> LockHold:
        return LockHold(self._db.loc, worker)

    def is_dead(self, worker: str) -> bool:
        return _lock_ids(lock_key(self._queue, worker)) not in held_keys(self._db)

    def publish(self, record: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO jobq_workers (queue, worker, record) VALUES (%s, %s, %s::jsonb)"
            " ON CONFLICT (queue, worker) DO UPDATE SET record = EXCLUDED.record,"
            " reaped_at = NULL, reaped_by = NULL, jobs = NULL",
            (self._queue, record["id"], json.dumps({"format": 1, **record})),
            doing="publish a worker's record")

    def withdraw(self, worker: str) -> None:
        self._db.execute("DELETE FROM jobq_workers WHERE queue = %s AND worker = %s"
                         " AND reaped_at IS NULL", (self._queue, worker),
                         doing="withdraw a worker's record")

    def bury(self, worker: str, *, by: str, jobs: Iterable[str], now: float) -> bool:
        """Mark a dead worker's record reaped; False if another reaper did, or it has none."""
        with self._db.transaction("bury a dead worker's record") as conn:
            buried = conn.execute(
                "UPDATE jobq_workers SET reaped_at = %s, reaped_by = %s, jobs = %s::jsonb"
                " WHERE queue = %s AND worker = %s AND reaped_at IS NULL",
                (now, by, json.dumps(sorted(jobs)), self._queue, worker)).rowcount > 0
            conn.execute(
                "DELETE FROM jobq_workers WHERE queue = %s AND reaped_at IS NOT NULL"
                " AND (reaped_at < %s OR worker NOT IN (SELECT worker FROM jobq_workers"
                " WHERE queue = %s AND reaped_at IS NOT NULL ORDER BY reaped_at DESC LIMIT %s))",
                (self._queue, now - KEEP_DEAD, self._queue, MAX_DEAD))
        return buried

    def recorded(self) -> list[str]:
        return [w for w, in self._db.execute(
            "SELECT worker FROM jobq_workers WHERE queue = %s AND reaped_at IS NULL"
            " ORDER BY worker", (self._queue,), doing="read the workers' records")]

    def read(self, now: float, owners: Iterable[str] = ()) -> list[WorkerInfo]:
        """Every worker with a record, live or dead, then the reaped ones, newest first (as
        :func:`jobq.worker_records.read`)."""
        rows = self._db.execute(
            "SELECT worker, record, reaped_at, reaped_by, jobs FROM jobq_workers"
            " WHERE queue = %s", (self._queue,), doing="read the workers' records")
        locks = held_keys(self._db)
        found: dict[str, WorkerInfo] = {}
        buried = []
        for worker, record, reaped_at, reaped_by, jobs in rows:
            record = record if isinstance(record, dict) else {}
            if reaped_at is not None:
                buried.append(info_from_record(worker, {**record, "reaped_at": reaped_at,
                                             "reaped_by": reaped_by, "jobs": jobs},
                                    WorkerState.REAPED))
                continue
            state = self._state(worker, record, locks, now)
            found[worker] = info_from_record(worker, record, state)
        for owner in owners:
            worker = worker_of(owner)
            if worker not in found:
                found[worker] = info_from_record(worker, from_id(worker),
                                      self._state(worker, {}, locks, now))
        current = sorted(found.values(), key=lambda w: (not w.alive, w.started or 0.0, w.id))
        return current + sorted(buried, key=lambda w: -(w.reaped_at or 0.0))

    def _state(self, worker: str, record: dict[str, Any], locks: set[tuple[int, int]],
               now: float) -> WorkerState:
        if _lock_ids(lock_key(self._queue, worker)) not in locks:
            return WorkerState.DEAD
        if stuck(number(record.get("heartbeat")), number(record.get("heartbeat_interval")), now):
            return WorkerState.STUCK
        return WorkerState.LIVE
