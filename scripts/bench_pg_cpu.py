#!/usr/bin/env python3
"""CPU per job of a PostgreSQL drain, the client's and the server's, against the bare claim loop.

    python scripts/bench_pg_cpu.py [--jobs N] [--runs R] [--dsn DSN] [--against CHECKOUT]...

Each run drains N no-op jobs (about 300 bytes of payload) in a database of its own, made and
dropped by a process that imports the checkout measured (scripts/pg_jobq.py's ``jobq worker
--burst`` drain, 2 workers of 1 child each, the layout bench_pg.py compares with pgqueuer), and
the bare claim loop at K=50 (scripts/pg_baselines.py, the same in every checkout). With
``--against``, each run measures every checkout in turn (interleaved): a schema version of one
never meets another's database.

Printed per checkout, medians of the runs: jobs/s, its ratio to the bare loop of the same run,
and CPU microseconds per job of the client (the worker processes and their children, from
``getrusage``) and of the server (the backends serving the run's database, read from /proc every
20 ms: a backend's CPU after its last sample is missed, a few milliseconds a run). Other
databases' backends (other users of the server) are not counted; the WAL writer's and
checkpointer's CPU is not either.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


class BackendCpu:
    """CPU seconds of the server processes whose title names ``database``, sampled in a thread."""

    def __init__(self, database: str) -> None:
        self._needle = f" {database} ".encode()
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self._seen.values())

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def _sample(self) -> None:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if self._needle not in f.read():
                        continue
                with open(f"/proc/{name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:  # exited meanwhile
                continue
            self._seen[int(name)] = (int(fields[11]) + int(fields[12])) / TICK


def measure(dsn: str, n: int, what: str) -> dict[str, float]:
    """One drain in a database of its own: jobs/s and CPU us per job (client, server)."""
    import pg_baselines
    import pg_jobq
    import pg_server
    from bench_scratch import scratch_dir

    pg_server.compile_sources()
    with scratch_dir("pgcpu-") as root, pg_server.bench_database(dsn, f"_{what}") as db:
        name = pg_server.psycopg_module().conninfo.conninfo_to_dict(db)["dbname"]
        drain: Callable[[], tuple[float, str]]
        if what == "bare":
            drain = lambda: pg_baselines.claim_drain(db, 50, n, root)  # noqa: E731
        else:
            drain = lambda: pg_jobq.worker_drain(db, n, "2x1", root)  # noqa: E731
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with BackendCpu(name) as server:
            rate, _ = drain()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"rate": rate, "client_us": client / n * 1e6, "server_us": server.seconds / n * 1e6}


def _backend_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def measure_engine(dsn: str, n: int, what: str) -> dict[str, float]:
    """The settle loop of one worker child on ``PgEngine.settle`` in this process (batches of
    100, the first started and the rest prefetched, as a child claims them), N no-op jobs:
    jobs/s, and CPU us per job of this process and of its one backend."""
    import time

    import bench_pg_engine
    import pg_server
    from peers.tasks import noop

    from jobq import job_record, transitions
    from jobq.pickling import PickleRules

    with pg_server.bench_database(dsn, f"_{what}") as db:
        url = pg_server.url_of(db, "cpu")
        engine = bench_pg_engine.open_queue(url)
        frames = bench_pg_engine.make_frames("e", n)
        for start in range(0, n, 5000):
            engine.append(frames[start:start + 5000])
        pid = engine._db.conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # noqa: SLF001
        rules = PickleRules.build()
        done = (lambda state, now, max_attempts: transitions.succeeded(state, None, now))
        finished: list[tuple[str, int, Any]] = []
        server, cpu, wall = _backend_seconds(pid), time.process_time(), time.perf_counter()
        ran = 0
        while True:
            _, claims = engine.settle(finished, "w", 1, prefetch=99)
            finished = []
            if not claims:
                break
            for claim in claims:
                payload = job_record.load_payload(engine.payload_body(claim.job_id, claim.ref),
                                                  rules, claim.job_id)
                noop(*payload.args[:0])
                finished.append((claim.job_id, claim.token, done))
            ran += len(claims)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        server = _backend_seconds(pid) - server
        engine.close()
    assert ran == n, (ran, n)
    return {"rate": n / wall, "client_us": cpu / n * 1e6, "server_us": server / n * 1e6}


def run_in(repo: Path, script: str, call: str) -> Any:
    """The JSON value of ``call`` (an expression of ``m``, the module of the file ``script``
    loaded by its path) in a process importing ``repo``'s jobq and scripts."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = f"{repo}{os.pathsep}{repo / 'scripts'}"
    # The file is loaded by its path: the modules it imports are ``repo``'s.
    code = (f"import sys; sys.path[:0] = [{str(repo)!r}, {str(repo / 'scripts')!r}];"
            " import importlib.util, json;"
            f" spec = importlib.util.spec_from_file_location('measured', {script!r});"
            " m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
            f" print(json.dumps({call}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _one(repo: Path, dsn: str, n: int, what: str) -> dict[str, float]:
    """``measure`` (or ``measure_engine``) in a process importing ``repo``'s jobq and scripts."""
    call = "measure_engine" if what == "engine" else "measure"
    return run_in(repo, __file__, f"m.{call}({dsn!r}, {n}, {what!r})")  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "JOBQ_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", type=Path, action="append", default=[])
    parser.add_argument("--engine", action="store_true", help="measure one process's settle"
                        " loop (PgEngine.settle, no worker) instead of the two workers' drain")
    args = parser.parse_args(argv)
    repos = [REPO, *(p.resolve() for p in args.against)]
    figures: dict[str, list[dict[str, float]]] = {}
    for run in range(args.runs):
        for i, repo in enumerate(repos):
            bare = _one(repo, args.dsn, args.jobs, "bare")
            got = _one(repo, args.dsn, args.jobs, "engine" if args.engine else "jobq")
            got["ratio"] = got["rate"] / bare["rate"]
            figures.setdefault(f"{i}:{repo}", []).append(got)
            figures.setdefault(f"{i}:bare", []).append(bare)
            print(f"run {run + 1} {repo}: jobq {got['rate']:,.0f}/s ({got['ratio']:.2f}x bare"
                  f" {bare['rate']:,.0f}/s), CPU us/job client {got['client_us']:.1f} server"
                  f" {got['server_us']:.1f}; bare client {bare['client_us']:.1f} server"
                  f" {bare['server_us']:.1f}; load {os.getloadavg()[0]:.2f}", flush=True)
    print(f"medians of {args.runs} runs, N={args.jobs:,}:")
    for key, rows in figures.items():
        med: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        extra = f" = {med['ratio']:.2f}x bare" if "ratio" in med else ""
        print(f"  {key}: {med['rate']:,.0f}/s{extra}; CPU us/job client {med['client_us']:.1f},"
              f" server {med['server_us']:.1f}, sum {med['client_us'] + med['server_us']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
