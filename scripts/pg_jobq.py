"""jobq's side of scripts/bench_pg.py, through its public surface: the real worker draining a
queue, ``Queue.enqueue`` and ``Queue.enqueue_many``, a SIGKILLed worker's job running again on
another worker, and the durability its sessions run with.

- drain: N no-op jobs queued by ``enqueue_many`` (not timed), then ``jobq worker --burst``
  processes started together (this checkout's jobq, ``python -m jobq.cli``, default options and
  logging: one JSON event per job to a log file), timed from just before the first start to
  the last completion recorded (``updated_at`` of its row in ``jobq_done``, the server's
  clock). Checked: every job succeeded once (``attempts`` = 1 in its row, and one
  ``job.succeeded`` event per job in the workers' logs), none left behind. A worker is a
  supervisor and its ``-c`` children, each running one job at a time: ``2x1`` is two workers
  of one child (2 processes running jobs, 4 in all), ``1x2`` one worker of two children (2
  running jobs, 3 in all);
- sigkill: one job that records its start and sleeps; worker A (``-c 1``) runs it, worker B
  waits idle; A's process group (supervisor and child) is SIGKILLed, and the figure is the
  time until B starts the job;
- the settle-level drain with finished jobs kept is scripts/bench_pg_engine.py's.

Each measurement starts from empty jobq tables (``pg_server.empty_jobq``), as every other
contender's does: the raw baselines make their table anew, pgqueuer and procrastinate TRUNCATE
theirs. Without it jobq's alone would carry every earlier measurement's rows (the queues enqueued
one by one and by ``enqueue_many`` are never drained: 120,000 rows a round), their dead row
versions and index entries (a server without autovacuum never clears them) and their effect on
the planner's estimates.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]  # this checkout's jobq, not an installed one

import pg_server  # noqa: E402
from peers import pg_driver  # noqa: E402
from peers.tasks import mark_and_sleep, noop_with  # noqa: E402

from jobq import Queue  # noqa: E402

PAD = b"x" * 220  # a job's argument: its payload about 300 bytes, as the raw rows' and peers'
FILL_BATCH = 5_000
LAYOUTS = {"2x1": (2, 1), "1x2": (1, 2)}  # worker processes x children each
SIGKILL_TIMEOUT = 30.0  # seconds for the killed worker's job to start again


def _queue(kind: str) -> str:
    return f"{kind}{time.monotonic_ns()}"


def worker_cmd(url: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "jobq.cli", "worker", "--log-format", "json", "--dir", url,
            *options]


def durability(dsn: str) -> tuple[str, str]:
    """synchronous_commit and the rest as a jobq session sees them (the connection a worker's
    child settles on is made the same way), and whether jobq's tables are logged."""
    with Queue(pg_server.url_of(dsn, "durability")) as q:
        conn = q.engine._db.conn  # noqa: SLF001 - the benchmark reads the session's settings
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in pg_driver.SETTINGS}
        persistence = dict(conn.execute(
            "SELECT relname, relpersistence FROM pg_class WHERE relkind = 'r'"
            " AND relname LIKE 'jobq\\_%'").fetchall())
    return pg_driver.durability(settings, persistence)


def enqueue_one(dsn: str, n: int) -> float:
    """Jobs per second: ``Queue.enqueue`` of one job per call (each committed when it returns)."""
    pg_server.empty_jobq(dsn)
    with Queue(pg_server.url_of(dsn, _queue("one"))) as q:
        start = time.perf_counter()
        for _ in range(n):
            q.enqueue(noop_with, PAD)
        return n / (time.perf_counter() - start)


def enqueue_many(dsn: str, n: int) -> float:
    """Jobs per second: ``Queue.enqueue_many`` of n jobs in one call."""
    pg_server.empty_jobq(dsn)
    args = [(PAD,)] * n
    with Queue(pg_server.url_of(dsn, _queue("many"))) as q:
        start = time.perf_counter()
        q.enqueue_many(noop_with, args)
        return n / (time.perf_counter() - start)


def worker_drain(dsn: str, n: int, layout: str, root: Path) -> tuple[float, str]:
    """jobs/s of ``jobq worker --burst`` processes draining n jobs, and a note (see above)."""
    pg_server.empty_jobq(dsn)
    processes, children = LAYOUTS[layout]
    queue = _queue(f"drain{layout}_")
    url = pg_server.url_of(dsn, queue)
    with Queue(url) as q:
        for start in range(0, n, FILL_BATCH):
            q.enqueue_many(noop_with, [(PAD,)] * min(FILL_BATCH, n - start))
    logs = [root / f"{queue}-{i}.log" for i in range(processes)]
    procs = []
    started = time.time()
    for log in logs:
        with open(log, "w") as err:
            procs.append(pg_server.spawn(worker_cmd(url, "--burst", "-c", str(children)), root,
                                         stderr=err))
    try:
        pg_server.wait(procs, f"jobq worker drain {layout}")
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}; log: {_tail(logs[0])}") from exc
    first, last, done, twice, handed, left = _outcome(dsn, queue)
    logged = Counter(e["job_id"] for log in logs for e in _events(log)
                     if e.get("event") == "job.succeeded")
    if done != n or twice or left or len(logged) != n or max(logged.values()) != 1:
        raise RuntimeError(f"jobq drain {layout}: {n - done} lost, {twice} run twice, {left} left,"
                           f" {len(logged)} logged, {sum(logged.values()) - len(logged)} twice")
    return (n / (last - started),
            f"N={n:,}, 0 lost, 0 run twice ({handed:,} handed back unstarted and claimed again);"
            f" {n / max(last - first, 1e-6):,.0f}/s from the first completion")


def _outcome(dsn: str, queue: str) -> tuple[float, float, int, int, int, int]:
    with pg_server.psycopg_module().connect(dsn) as conn:
        first, last, done, twice, handed = conn.execute(
            "SELECT min(updated_at), max(updated_at), count(*) FILTER (WHERE status ="
            " 'succeeded'), count(*) FILTER (WHERE attempts <> 1), count(*) FILTER (WHERE"
            " token > 1) FROM jobq_done WHERE queue = %s", (queue,)).fetchone()
        left = conn.execute("SELECT count(*) FROM jobq_jobs WHERE queue = %s",
                            (queue,)).fetchone()[0]
    return first, last, done, twice, handed, left


def _events(log: Path) -> list[dict[str, object]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


def _tail(log: Path) -> str:
    return " | ".join(log.read_text(errors="replace").splitlines()[-5:])


def sigkill_rerun(dsn: str, root: Path) -> float:
    """Seconds from SIGKILL of the worker running a job to another worker starting it."""
    pg_server.empty_jobq(dsn)
    queue = _queue("kill")
    url = pg_server.url_of(dsn, queue)
    mark = root / f"{queue}.marks"
    with Queue(url) as q:
        q.enqueue(mark_and_sleep, str(mark))
    procs = []
    try:
        for name in ("a", "b"):
            with open(root / f"{queue}-{name}.log", "w") as err:
                procs.append(pg_server.spawn(worker_cmd(url, "-c", "1"), root, stderr=err))
            if name == "a":
                pg_driver.wait_for(lambda: pg_driver.marks(mark), 60, "the job starting on A")
        time.sleep(1.0)  # B is up and idle, as a live second worker would be
        os.killpg(procs[0].pid, signal.SIGKILL)
        killed = time.time()
        again = pg_driver.wait_for(lambda: pg_driver.marks(mark)[1:], SIGKILL_TIMEOUT,
                                   "the job starting again")
    finally:
        pg_server.stop(procs)
    return again[0][1] - killed


def sigkill_trials(dsn: str, root: Path, trials: int) -> list[float]:
    return [sigkill_rerun(dsn, root) for _ in range(trials)]


def summary(seconds: Sequence[float]) -> str:
    return (f"median {statistics.median(seconds):.3f} s over {len(seconds)} trials"
            f" ({', '.join(f'{s:.3f}' for s in sorted(seconds))})")
