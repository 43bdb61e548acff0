"""Measure one workload of one queue system; print one JSON object on stdout.

    python -m peers.driver SYSTEM WORKLOAD --dir DIR --jobs N [--redis-url URL]

SYSTEM is jobq, huey, diskcache, diskcache-full or rq; WORKLOAD is enqueue (N calls, one job
each), bulk (one call for N jobs), drain1 or drain2 (N jobs queued first, then 1 or 2 consumer
processes started together). The output is ``{"rate": jobs per second, "steady": jobs per
second or null, "durability": text, "short": text}``, the durability read from the live system
(SQLite pragmas, redis CONFIG).

A drain is timed on the wall clock from just before the first consumer process starts (so it
includes their start-up) to the moment the N-th job is recorded finished (``rate``), and, as
``steady``, from the first job recorded finished to the N-th (N - 1 jobs: start-up left out):

- jobq: the burst workers exit once nothing is left; the first and N-th jobs' finishing times are
  the earliest and latest ``updated_at`` of the jobs (the time its worker recorded each);
- huey: its completion signal has appended N bytes to a file (polled: the first time is when the
  file was first seen non-empty);
- diskcache: each consumer notes the times of its first and last jobs and exits when the deque is
  empty (no ack and no record of a finished job, so the consumers report them);
- rq: its finished-job registry holds N jobs (polled, as huey's file).

jobq runs with the project's interpreter; the peers run in their own virtual environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peers.tasks import noop

POLL = 0.005  # seconds between completion checks
DRAIN_TIMEOUT = 900.0  # seconds for consumers to finish N jobs
EXIT_TIMEOUT = 60.0  # seconds for burst consumers to exit once every job is done
SQLITE_SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class System:
    """One queue system in a fresh directory: producer calls and consumer processes."""

    burst = True  # consumers exit by themselves once the queue is empty

    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        self.dir = directory
        self.args = args

    def durability(self) -> tuple[str, str]:
        """How durable an enqueue and a state change are: in full, and in a few words."""
        raise NotImplementedError

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def bulk(self, n: int) -> bool:
        """Enqueue n jobs in one call; False when the system has no such call."""
        return False

    def fill(self, n: int) -> None:
        """Queue n jobs before a drain, as fast as the API allows (not timed)."""
        if not self.bulk(n):
            self.enqueue(n)

    def consumer_commands(self, consumers: int) -> list[list[str]]:
        raise NotImplementedError

    def finished(self) -> int:
        """How many jobs are recorded finished; raises when one failed."""
        raise NotImplementedError

    def wait_drained(self, n: int, procs: list[subprocess.Popen[bytes]],
                     logs: list[Path]) -> tuple[float, float]:
        """Wall times at which the first and the n-th jobs were recorded finished."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        first = None
        while (done := self.finished()) < n:
            if done and first is None:
                first = time.time()
            _check_running(procs, logs, burst=self.burst)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{done} of {n} jobs done after {DRAIN_TIMEOUT}s")
            time.sleep(POLL)
        last = time.time()
        return (last if first is None else first), last


class Jobq(System):
    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        super().__init__(directory, args)
        from jobq import Queue

        self.q = Queue(directory, fsync=True)

    def durability(self) -> tuple[str, str]:
        sync = "?"
        with contextlib.suppress(Exception):  # internals may change; the fallback says so
            sync = SQLITE_SYNC[self.q.store.conn.execute("PRAGMA synchronous").fetchone()[0]]
        # jobq commits with NORMAL and fdatasyncs the WAL itself before each write returns
        # (group commit, jobq.local.store): as durable as FULL once the call has returned.
        return (f"fdatasync per enqueue call (fsync=True, the default); state in SQLite WAL,"
                f" synchronous={sync}, then an fdatasync of the WAL before each state change"
                f" returns (group commit)", f"fdatasync, synchronous={sync} + WAL fdatasync")

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.q.enqueue(noop)

    def bulk(self, n: int) -> bool:
        self.q.enqueue_many(noop, [()] * n)
        return True

    def consumer_commands(self, consumers: int) -> list[list[str]]:
        script = Path(sys.executable).parent / "jobq"
        jobq = [str(script)] if script.exists() else [sys.executable, "-m", "jobq.cli"]
        return [[*jobq, "worker", "--burst", "--dir", str(self.dir), "-c", "1"]] * consumers

    def finished(self) -> int:
        counts = self.q.counts()
        if counts["dead"] or counts["failed"]:
            raise RuntimeError(f"jobs failed: {counts}")
        return counts["succeeded"]

    def wait_drained(self, n: int, procs: list[subprocess.Popen[bytes]],
                     logs: list[Path]) -> tuple[float, float]:
        """Burst workers exit once the queue is drained; each job's finishing time is in its
        row (written by the worker that recorded it). Polling counts() instead, a GROUP BY over
        every job, would take a core from the workers being measured."""
        for proc, log in zip(procs, logs):
            if proc.wait(timeout=DRAIN_TIMEOUT) != 0:
                raise RuntimeError(f"worker exited with {proc.returncode}: {_tail(log)}")
        if self.finished() != n:
            raise RuntimeError(f"{self.finished()} of {n} jobs done")
        times = [s.updated_at for s in self.q.jobs("succeeded")]
        return min(times), max(times)


class Huey(System):
    burst = False

    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        super().__init__(directory, args)
        directory.mkdir(parents=True, exist_ok=True)
        self.done_file = directory / "done"
        os.environ["PEERS_HUEY_DB"] = str(directory / "huey.db")  # read by peers.huey_app
        os.environ["PEERS_DONE_FILE"] = str(self.done_file)
        from peers import huey_app

        self.app = huey_app

    def durability(self) -> tuple[str, str]:
        storage = self.app.huey.storage
        sync = SQLITE_SYNC[storage.sql("PRAGMA synchronous", results=True)[0][0]]
        journal = storage.sql("PRAGMA journal_mode", results=True)[0][0]
        return (f"SQLite {journal}, synchronous={sync} (huey's default: it sets no pragma);"
                " a job is removed from the queue when a worker takes it, no ack",
                f"synchronous={sync}")

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.app.noop()

    def consumer_commands(self, consumers: int) -> list[list[str]]:
        """One consumer process with ``consumers`` worker processes (huey's process mode)."""
        consumer = str(Path(sys.executable).parent / "huey_consumer")
        return [[consumer, "peers.huey_app.huey", "-k", "process", "-w", str(consumers)]]

    def finished(self) -> int:
        try:
            return self.done_file.stat().st_size
        except FileNotFoundError:
            return 0


class Diskcache(System):
    full = False  # sqlite_synchronous: diskcache's default is 1 (NORMAL)

    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        super().__init__(directory, args)
        from diskcache import Cache, Deque

        settings = {"sqlite_synchronous": 2} if self.full else {}
        self.deque = Deque.fromcache(Cache(str(directory), eviction_policy="none", **settings))

    def durability(self) -> tuple[str, str]:
        sql = self.deque.cache._sql  # diskcache's own connection, with its pragmas
        sync = SQLITE_SYNC[sql("PRAGMA synchronous").fetchone()[0]]
        journal = sql("PRAGMA journal_mode").fetchone()[0]
        how = "sqlite_synchronous=2 set here" if self.full else "diskcache's default"
        return (f"SQLite {journal}, synchronous={sync} ({how}); popleft deletes, no ack",
                f"synchronous={sync}")

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.deque.append((noop, (), {}))

    def bulk(self, n: int) -> bool:
        with self.deque.transact():  # one transaction, as diskcache's docs advise for batches
            self.deque.extend([(noop, (), {})] * n)
        return True

    def consumer_commands(self, consumers: int) -> list[list[str]]:
        return [[sys.executable, "-m", "peers.driver", self.args.system, "consume", "--dir",
                 str(self.dir), "--out", str(self.dir / f"consumer-{i}.json")]
                for i in range(consumers)]

    def consume(self, out: Path) -> None:
        """Pop and run jobs until the deque is empty; write the count and the first and last
        finish times."""
        count, first, last = 0, None, None
        while True:
            try:
                fn, args, kwargs = self.deque.popleft()
            except IndexError:
                break
            fn(*args, **kwargs)
            count += 1
            last = time.time()
            if first is None:
                first = last
        out.write_text(json.dumps({"count": count, "first": first, "last": last}))

    def wait_drained(self, n: int, procs: list[subprocess.Popen[bytes]],
                     logs: list[Path]) -> tuple[float, float]:
        for proc, log in zip(procs, logs):
            if proc.wait(timeout=DRAIN_TIMEOUT) != 0:
                raise RuntimeError(f"consumer exited with {proc.returncode}: {_tail(log)}")
        reports = [json.loads(p.read_text()) for p in sorted(self.dir.glob("consumer-*.json"))]
        done = sum(r["count"] for r in reports)
        if done != n:
            raise RuntimeError(f"{done} of {n} jobs done")
        ran = [r for r in reports if r["last"] is not None]
        return min(r["first"] for r in ran), max(r["last"] for r in ran)


class DiskcacheFull(Diskcache):
    full = True


class Rq(System):
    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        super().__init__(directory, args)
        from redis import Redis
        from rq import Queue

        self.conn = Redis.from_url(args.redis_url)
        self.q = Queue("bench", connection=self.conn)
        self.prepare = Queue.prepare_data

    def durability(self) -> tuple[str, str]:
        config = {**self.conn.config_get("appendonly"), **self.conn.config_get("appendfsync"),
                  **self.conn.config_get("save")}
        fsync = config["appendfsync"] if config["appendonly"] == "yes" else "no AOF"
        return (f"redis appendonly={config['appendonly']}, appendfsync={config['appendfsync']},"
                f" RDB snapshots {config['save'] or 'off'}", f"AOF fsync {fsync}")

    def enqueue(self, n: int) -> None:
        for _ in range(n):
            self.q.enqueue(noop)

    def bulk(self, n: int) -> bool:
        self.q.enqueue_many([self.prepare(noop) for _ in range(n)])
        return True

    def consumer_commands(self, consumers: int) -> list[list[str]]:
        rq = str(Path(sys.executable).parent / "rq")
        return [[rq, "worker", "--burst", "-w", "rq.SimpleWorker", "-u", self.args.redis_url,
                 "bench"]] * consumers

    def finished(self) -> int:
        if self.conn.zcard(self.q.failed_job_registry.key):
            raise RuntimeError("rq jobs failed")
        return int(self.conn.zcard(self.q.finished_job_registry.key))


SYSTEMS: dict[str, type[System]] = {"jobq": Jobq, "huey": Huey, "diskcache": Diskcache,
                                    "diskcache-full": DiskcacheFull, "rq": Rq}


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"


def _check_running(procs: list[subprocess.Popen[bytes]], logs: list[Path], *, burst: bool) -> None:
    """Fail fast when a consumer died (or, for a burst consumer, failed) before the drain ended."""
    for proc, log in zip(procs, logs):
        code = proc.poll()
        if code is not None and (code != 0 or not burst):
            raise RuntimeError(f"consumer exited with {code} before the drain ended: {_tail(log)}")


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:  # each consumer's own (default) logging goes to its file
        return subprocess.Popen(cmd, stdout=err, stderr=err, start_new_session=True)


def _stop(procs: list[subprocess.Popen[bytes]], *, wait: float) -> None:
    """Let consumers exit within ``wait`` seconds, then stop their process groups."""
    deadline = time.monotonic() + wait
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the group: huey's worker processes, jobq's children
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        if all(proc.returncode is not None for proc in procs):
            break


def drain(system: System, n: int, consumers: int) -> tuple[float, float | None]:
    """Queue n jobs, then time consumers from their start to the n-th recorded finish; the
    rate so timed, and the steady rate (from the first recorded finish to the n-th)."""
    system.fill(n)
    logs = [system.dir.parent / f"{system.dir.name}-consumer-{i}.log" for i in range(consumers)]
    procs: list[subprocess.Popen[bytes]] = []
    started = time.time()
    try:
        for cmd, log in zip(system.consumer_commands(consumers), logs):
            procs.append(_start(cmd, log))
        first, ended = system.wait_drained(n, procs, logs)
    except BaseException:
        _stop(procs, wait=0.0)  # failed or interrupted: stop them now
        raise
    _stop(procs, wait=EXIT_TIMEOUT if system.burst else 0.0)
    return n / (ended - started), (n - 1) / (ended - first) if ended > first else None


def _timed_rate(n: int, work: Callable[[], Any]) -> tuple[float | None, None]:
    start = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - start
    return None if result is False else n / elapsed, None


def measure(system: System, workload: str, n: int) -> tuple[float | None, float | None]:
    """The workload's rate, and for a drain its steady rate (None where it has none)."""
    if workload == "enqueue":
        return _timed_rate(n, lambda: system.enqueue(n))
    if workload == "bulk":
        return _timed_rate(n, lambda: system.bulk(n))
    if workload in ("drain1", "drain2"):
        return drain(system, n, int(workload[-1]))
    raise ValueError(f"unknown workload {workload!r}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that `finally` blocks stop the consumers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("workload", choices=("enqueue", "bulk", "drain1", "drain2", "consume"))
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--out", type=Path, help="consume: where to write the consumer's report")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    system = SYSTEMS[args.system](args.dir, args)
    if args.workload == "consume":
        assert isinstance(system, Diskcache)
        system.consume(args.out)
        return 0
    durability, short = system.durability()
    rate, steady = measure(system, args.workload, args.jobs)
    print(json.dumps({"rate": rate, "steady": steady, "durability": durability, "short": short}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
