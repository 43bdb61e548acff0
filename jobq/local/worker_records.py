"""Who works on a queue directory: the record each worker publishes about itself, and reading
them back (the records' fields: :mod:`jobq.worker_info`).

Layout::

    <queue>/workers/<id>.lock        flocked for the worker's whole life (jobq.local.workers): whether
                                     a worker lives is decided by this lock, and only by it
    <queue>/workers/<id>.json        its record: host, pid, when it started, and a heartbeat with
                                     what each child runs, rewritten every few seconds
    <queue>/workers/dead/<id>.json   the record of a worker found dead, with who found it, when, and
                                     the jobs it held; kept a day, and at most MAX_DEAD of them

The record is a file of its own, not the lock file's contents: it is replaced whole by a rename,
so a reader never sees half a heartbeat, whereas the lock file must keep its inode for life (a
new inode is a new, unheld lock) and is removed by whoever finds its holder dead. The heartbeat
is not fsynced: it only matters while the machine is up. A worker that exits cleanly removes its
record before its lock; one that dies leaves it, shown ``dead`` until a live worker buries it.

The heartbeat never decides liveness: a worker whose lock is held is alive, and only ``stuck``
if its heartbeat is old (its supervisor loop stopped turning). Reading takes no lock a worker
could trip over: :func:`holds_lock` tries a *shared* lock, non-blocking, for an instant, on a
descriptor opened read-only (no write permission needed, nothing unlinked). A reaper probing at
that same instant takes the dead worker for alive, and looks again at its next round.

Record (JSON, ``format`` 1)::

    {"format": 1, "id", "host", "pid", "started", "queue", "version", "concurrency",
     "heartbeat", "heartbeat_interval",
     "children": [{"n", "pid", "job_id" (null: idle), "since" (wall clock, null: idle)}],
     dead entries only: "reaped_at", "reaped_by", "jobs" (ids it held when found dead)}
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import durable
from ..engine import worker_of
from ..engine.workers import KEEP_DEAD, MAX_DEAD
from ..errors import StorageError

# jobq.worker_info is imported where records are read: its dataclasses would cost every
# worker's start (a supervisor takes its lock here before it forks its children).
if TYPE_CHECKING:
    from ..worker_info import WorkerInfo, WorkerState

DIR = "workers"
DEAD_DIR = "dead"
FORMAT = 1


def lock_path(root: str, worker_id: str) -> str:
    return os.path.join(root, DIR, f"{worker_id}.lock")


def record_path(root: str, worker_id: str) -> str:
    return os.path.join(root, DIR, f"{worker_id}.json")


# -- the worker's side --------------------------------------------------------------------------

def publish(root: str, record: dict[str, Any]) -> None:
    """Replace this worker's record (atomically, not durably: see the module docstring)."""
    data = json.dumps({"format": FORMAT, **record}, separators=(",", ":")).encode()
    durable.atomic_write(record_path(root, record["id"]), data, sync=False)


def withdraw(root: str, worker_id: str) -> None:
    """Remove the record of a worker that exits cleanly (before it lets go of its lock)."""
    _unlink(record_path(root, worker_id))


def bury(root: str, worker_id: str, *, by: str, jobs: Iterable[str], now: float) -> bool:
    """Put the record of a worker found dead in ``dead/``, saying who found it and what it held.

    The entry appears whole (a reader never sees it without who reaped the worker and the jobs
    it held), and making it decides which of several reapers writes it: the others find it made,
    or no record left, and return False. An entry of a worker that came back to life after it
    was buried (its lock file removed by hand: it beat after that burial) is replaced. Call it
    only once the worker's lock was found free.
    """
    source = record_path(root, worker_id)
    if not os.path.exists(source):
        return False  # another reaper buried it, or it exited cleanly
    record = _load(source) or {"id": worker_id}
    dead_dir = os.path.join(root, DIR, DEAD_DIR)
    durable.make_dir(dead_dir)  # shared inside a shared queue
    target = os.path.join(dead_dir, f"{worker_id}.json")
    data = json.dumps({**record, "reaped_at": now, "reaped_by": by, "jobs": sorted(jobs)},
                      separators=(",", ":")).encode()
    if not durable.atomic_write(target, data, exclusive=True, sync=False):
        if _seconds(record.get("heartbeat")) <= _seconds((_load(target) or {}).get("reaped_at")):
            return False  # another reaper's entry (it is removing the record)
        durable.atomic_write(target, data, sync=False)  # it came back, and died again
    _unlink(source)
    workers_dir = os.path.dirname(source)
    for name in os.listdir(workers_dir):  # a heartbeat it was writing when it died
        if name.startswith(f"{worker_id}.json.tmp."):
            _unlink(os.path.join(workers_dir, name))
    prune(dead_dir, now)
    return True


def _seconds(value: Any) -> float:
    """A time read from a record (0 where it holds none, or no number)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else 0.0


def recorded(root: str) -> list[str]:
    """Ids of the workers with a record in ``workers/`` (live, stuck, or dead and not buried)."""
    return [name[:-len(".json")] for name in _names(os.path.join(root, DIR))]


def prune(dead_dir: str, now: float) -> int:
    """Forget dead workers older than KEEP_DEAD, and all but the MAX_DEAD newest; return how many.

    Everything in ``dead/`` counts, temporary files a reaper left as it died too."""
    entries = []
    for name in os.listdir(dead_dir):
        try:
            entries.append((os.stat(os.path.join(dead_dir, name)).st_mtime, name))
        except FileNotFoundError:
            continue
    entries.sort(reverse=True)
    gone = [name for i, (mtime, name) in enumerate(entries)
            if i >= MAX_DEAD or now - mtime > KEEP_DEAD]
    for name in gone:
        _unlink(os.path.join(dead_dir, name))
    return len(gone)


# -- reading ------------------------------------------------------------------------------------

def holds_lock(root: str, worker_id: str) -> bool:
    """Does ``worker_id`` hold its liveness lock? Read-only, and never removes anything."""
    try:
        fd = os.open(lock_path(root, worker_id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # reaped, or exited
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the shared lock at once, if it was taken
    return False


def read(root: str, now: float, owners: Iterable[str] = ()) -> list[WorkerInfo]:
    """Every worker with a record, live or dead, then the dead ones remembered, newest first.

    ``owners`` are the owners of running claims: a worker among them without a record (from an
    older jobq, or killed before it wrote one) is listed too, from its lock alone.
    """
    try:
        return _read(root, now, owners)
    except OSError as exc:  # no permission to read the directory, or a lock file
        raise StorageError(f"cannot read the workers' records in {os.path.join(root, DIR)}:"
                           f" {exc.strerror or exc}", path=root, errno=exc.errno) from exc


def _read(root: str, now: float, owners: Iterable[str]) -> list[WorkerInfo]:
    from ..worker_info import WorkerState, from_id, info_from_record

    found: dict[str, WorkerInfo] = {}
    workers_dir = os.path.join(root, DIR)
    for name in _names(workers_dir):
        worker_id = name[:-len(".json")]
        record = _load(os.path.join(workers_dir, name))
        if record is not None or os.path.exists(lock_path(root, worker_id)):
            found[worker_id] = info_from_record(worker_id, record or {}, _state(root, worker_id, record, now))
    for owner in owners:
        worker_id = worker_of(owner)
        if worker_id not in found:
            found[worker_id] = info_from_record(worker_id, from_id(worker_id),
                                     _state(root, worker_id, None, now))
    # Read after workers/: a record buried meanwhile shows here, not nowhere.
    dead_dir = os.path.join(workers_dir, DEAD_DIR)
    buried = []
    for name in _names(dead_dir):
        record = _load(os.path.join(dead_dir, name))
        worker_id = name[:-len(".json")]
        if record is None or (worker_id in found and found[worker_id].alive):
            continue  # a live worker taken for dead (its lock file removed by hand) came back
        found.pop(worker_id, None)
        buried.append(info_from_record(worker_id, record, WorkerState.REAPED))
    current = sorted(found.values(), key=lambda w: (not w.alive, w.started or 0.0, w.id))
    return current + sorted(buried, key=lambda w: -(w.reaped_at or 0.0))


def _state(root: str, worker_id: str, record: dict[str, Any] | None, now: float) -> WorkerState:
    from ..worker_info import WorkerState, number, stuck

    if not holds_lock(root, worker_id):
        return WorkerState.DEAD
    record = record or {}
    if stuck(number(record.get("heartbeat")), number(record.get("heartbeat_interval")), now):
        return WorkerState.STUCK
    return WorkerState.LIVE


def _names(directory: str) -> list[str]:
    """The ``*.json`` entries of ``directory`` (not temporary files); none if it does not exist."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [n for n in names if n.endswith(".json") and not n.startswith(".")]


def _load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            record = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None  # gone meanwhile (an exit, a burial), or not a record
    return record if isinstance(record, dict) else None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
