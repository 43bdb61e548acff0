"""Measure a PostgreSQL-backed peer (pgqueuer, procrastinate); print one JSON object on stdout.

    python -m peers.pg_driver SYSTEM drain --dsn DSN --jobs N [--consumers 2]
    python -m peers.pg_driver pgqueuer sigkill --dsn DSN --dir DIR

Runs in the peers' own virtual environment (scripts/bench_pg.py makes it). Each system keeps its
tables in the benchmark's database; they are made on first use and emptied before each
measurement.

drain: N no-op jobs are queued with the system's bulk call (not timed), then ``--consumers``
worker processes are started together, each running until the queue is empty; the rate is N over
the time from just before the first start to the last completion the system recorded (pgqueuer:
the latest ``created`` of its ``successful`` rows in ``pgqueuer_log``; procrastinate: the latest
``succeeded`` event in ``procrastinate_events``), both on this machine's clock. Each job unpickles
a payload and calls ``peers.tasks.noop`` (procrastinate's task arguments are JSON, so its job only
calls it). The durability is read from a consumer's own session (``SHOW``) and from ``pg_class``
(logged or unlogged tables).

sigkill (pgqueuer): one job that records its start and then sleeps; worker A takes it, worker B
waits idle; A is SIGKILLed, and the answer is the time until B starts the job, with pgqueuer's
defaults (``heartbeat_timeout`` 30 s, ``dequeue_timeout`` 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from peers.tasks import noop

PAYLOAD = pickle.dumps((noop, (), {}, b"x" * 220))
DRAIN_TIMEOUT = 900.0  # seconds for the consumers to finish N jobs
SIGKILL_TIMEOUT = 150.0  # seconds for a killed worker's job to start again
SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes")
MARK_ENV = "PEERS_PG_MARK"  # the file where the sleepy job appends "pid time" when it starts


def durability(settings: dict[str, str], persistence: dict[str, str]) -> tuple[str, str]:
    tables = ", ".join(f"{t} {'UNLOGGED' if p == 'u' else 'LOGGED'}"
                       for t, p in sorted(persistence.items()))
    full = ", ".join(f"{k}={settings[k]}" for k in SETTINGS) + f" (its session); tables: {tables}"
    logged = "all tables logged" if set(persistence.values()) == {"p"} else "some UNLOGGED"
    return full, f"synchronous_commit={settings['synchronous_commit']}, {logged}"


# -- pgqueuer -----------------------------------------------------------------------------------


class Pgqueuer:
    tables = ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics")

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def _connect(self) -> Any:
        import psycopg
        from pgqueuer import PsycopgDriver

        conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return conn, PsycopgDriver(conn)

    async def prepare(self) -> None:
        """Tables made on first use, then emptied."""
        from pgqueuer import Queries

        conn, driver = await self._connect()
        async with conn:
            cur = await conn.execute("SELECT to_regclass('pgqueuer') IS NOT NULL")
            if not (await cur.fetchone())[0]:
                await Queries(driver).install()
            await conn.execute(f"TRUNCATE {', '.join(self.tables)}")

    async def fill(self, n: int, entrypoint: str = "noop") -> None:
        from pgqueuer import Queries

        conn, driver = await self._connect()
        async with conn:
            await Queries(driver).enqueue([entrypoint] * n, [PAYLOAD] * n, [0] * n)

    async def consume(self, drain: bool, report: Path | None) -> None:
        """A worker: until the queue is empty (drain), or until killed."""
        from pgqueuer import QueueManager, Queries
        from pgqueuer.types import QueueExecutionMode

        conn, driver = await self._connect()
        async with conn:
            qm = QueueManager(Queries(driver))

            @qm.entrypoint("noop")
            async def run_noop(job: Any) -> None:
                fn, args, kwargs, _pad = pickle.loads(job.payload)
                fn(*args, **kwargs)

            @qm.entrypoint("sleepy")
            async def sleepy(job: Any) -> None:
                with open(os.environ[MARK_ENV], "a") as mark:
                    mark.write(f"{os.getpid()} {time.time()}\n")
                await asyncio.sleep(3600)

            if report is not None:
                settings = {k: (await (await conn.execute(f"SHOW {k}")).fetchone())[0]
                            for k in SETTINGS}
                report.write_text(json.dumps(settings))
            mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
            await qm.run(mode=mode)

    async def outcome(self, n: int) -> tuple[float, int]:
        """The last recorded completion (epoch seconds) and how many jobs succeeded."""
        conn, _driver = await self._connect()
        async with conn:
            cur = await conn.execute(
                "SELECT extract(epoch FROM max(created))::float8, count(DISTINCT job_id),"
                " count(*) FROM pgqueuer_log WHERE status = 'successful'")
            last, distinct, total = await cur.fetchone()
        if total != distinct:
            raise RuntimeError(f"pgqueuer recorded {total - distinct} jobs twice")
        return last, distinct

    async def persistence(self) -> dict[str, str]:
        conn, _driver = await self._connect()
        async with conn:
            cur = await conn.execute("SELECT relname, relpersistence FROM pg_class"
                                     " WHERE relname = ANY(%s)", [list(self.tables)])
            return dict(await cur.fetchall())


# -- procrastinate -------------------------------------------------------------------------------


def _procrastinate_app(dsn: str) -> Any:
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def run_noop() -> None:
        noop()

    return app


class Procrastinate:
    tables = ("procrastinate_jobs", "procrastinate_events")

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.app = _procrastinate_app(dsn)

    async def _fetch(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            cur = await conn.execute(query, list(args) or None)
            return await cur.fetchall() if cur.description else []

    async def prepare(self) -> None:
        exists = await self._fetch("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
        if not exists[0][0]:
            async with self.app.open_async():
                await self.app.schema_manager.apply_schema_async()
        await self._fetch("TRUNCATE procrastinate_jobs, procrastinate_events,"
                          " procrastinate_periodic_defers, procrastinate_workers CASCADE")

    async def fill(self, n: int) -> None:
        async with self.app.open_async():
            task = self.app.tasks["noop"]
            for start in range(0, n, 5_000):
                await task.batch_defer_async(*([{}] * min(5_000, n - start)))

    async def consume(self, drain: bool, report: Path | None) -> None:
        async with self.app.open_async():
            if report is not None:
                settings = {}
                for k in SETTINGS:
                    row = await self.app.connector.execute_query_one_async(f"SHOW {k}")
                    settings[k] = row[k]
                report.write_text(json.dumps(settings))
            await self.app.run_worker_async(wait=not drain, concurrency=1)

    async def outcome(self, n: int) -> tuple[float, int]:
        (last, events), = await self._fetch(
            "SELECT extract(epoch FROM max(at))::float8, count(*) FROM procrastinate_events"
            " WHERE type = 'succeeded'")
        (done,), = await self._fetch(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
        if events != done:
            raise RuntimeError(f"procrastinate: {events} succeeded events for {done} jobs")
        return last, done

    async def persistence(self) -> dict[str, str]:
        return dict(await self._fetch("SELECT relname, relpersistence FROM pg_class"
                                      " WHERE relname = ANY(%s)", list(self.tables)))


SYSTEMS: dict[str, Any] = {"pgqueuer": Pgqueuer, "procrastinate": Procrastinate}


# -- processes ------------------------------------------------------------------------------------


def _consumer(args: argparse.Namespace, command: str, log: Path, report: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "peers.pg_driver", args.system, command, "--dsn", args.dsn]
    if report is not None:
        cmd += ["--report", str(report)]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True,
                                env={**os.environ, **(env or {})})


def _kill(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(log.read_text(errors="replace").splitlines()[-5:])
    return "(no log)"


def drain(args: argparse.Namespace) -> dict[str, Any]:
    system = SYSTEMS[args.system](args.dsn)
    asyncio.run(system.prepare())
    asyncio.run(system.fill(args.jobs))
    logs = [args.dir / f"{args.system}-consumer-{i}.log" for i in range(args.consumers)]
    report = args.dir / f"{args.system}-settings.json"
    procs: list[subprocess.Popen[bytes]] = []
    started = time.time()
    try:
        for i, log in enumerate(logs):
            procs.append(_consumer(args, "consume", log, report if i == 0 else None))
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for proc, log in zip(procs, logs):
            if proc.wait(timeout=max(1.0, deadline - time.monotonic())) != 0:
                raise RuntimeError(f"consumer exited with {proc.returncode}: {_tail(log)}")
    finally:
        _kill([p for p in procs if p.poll() is None])
    last, done = asyncio.run(system.outcome(args.jobs))
    if done != args.jobs:
        raise RuntimeError(f"{args.system}: {done} of {args.jobs} jobs succeeded")
    full, short = durability(json.loads(report.read_text()), asyncio.run(system.persistence()))
    return {"rate": args.jobs / (last - started), "durability": full, "short": short}


def marks(mark: Path) -> list[tuple[int, float]]:
    with contextlib.suppress(FileNotFoundError):
        return [(int(p), float(t)) for p, t in (line.split() for line in mark.read_text().split("\n")
                                               if line)]
    return []


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not seen within {timeout:.0f} s")
        time.sleep(0.01)
    return value


def sigkill(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from SIGKILL of the worker running a job to another worker starting it."""
    system = Pgqueuer(args.dsn)
    asyncio.run(system.prepare())
    mark = args.dir / "pgqueuer-sigkill.marks"
    env = {MARK_ENV: str(mark)}
    asyncio.run(system.fill(1, entrypoint="sleepy"))
    procs = [_consumer(args, "hold", args.dir / "pgqueuer-holder-a.log", env=env)]
    try:
        (pid_a, _), = wait_for(lambda: marks(mark), 60, "the job starting on worker A")
        procs.append(_consumer(args, "hold", args.dir / "pgqueuer-holder-b.log", env=env))
        time.sleep(1.0)  # B is up and idle, as a live second worker would be
        os.killpg(procs[0].pid, signal.SIGKILL)
        killed = time.time()
        again = wait_for(lambda: marks(mark)[1:], SIGKILL_TIMEOUT, "the job starting again")
    finally:
        _kill(procs)
    return {"seconds": again[0][1] - killed, "killed_pid": pid_a, "rerun_pid": again[0][0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=sorted(SYSTEMS))
    parser.add_argument("workload", choices=("drain", "sigkill", "consume", "hold"))
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--dir", type=Path, help="drain, sigkill: where logs and marks go")
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--report", type=Path, help="consume: write the session's settings here")
    args = parser.parse_args(argv)
    if args.workload in ("consume", "hold"):
        system = SYSTEMS[args.system](args.dsn)
        asyncio.run(system.consume(drain=args.workload == "consume", report=args.report))
        return 0
    if args.workload == "sigkill" and args.system != "pgqueuer":
        parser.error("sigkill is measured for pgqueuer only")
    answer = drain(args) if args.workload == "drain" else sigkill(args)
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
