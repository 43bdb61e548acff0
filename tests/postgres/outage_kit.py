"""A drain of resumable jobs on PostgreSQL through outages, and the checks at its end.

The jobs are tests/torture_tasks.py's ``steps``: each run appends to a trail file what it
resumed from, each checkpoint it saved, and what it returned, so the end check can tell that
every acknowledged job succeeded once (its recorded result is the sum of the attempt that
recorded it, and no run started after that one), that no checkpoint went backwards (each run
resumed from the furthest step saved before it), and how many jobs ran more than once (allowed:
execution is at least once).

Workers are real processes (``Worker`` with a short lease, JSON events in a log file); producers
are torture_tasks' (an id is acknowledged once ``enqueue_call`` returned).
"""

from __future__ import annotations

import collections
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
import torture_tasks
from conftest import Children, WorkerProcess

import pg

from jobq import Queue, Status
from jobq.errors import JobNotFound, StorageError, transient

WORKER = """
import logging, sys
from jobq import Queue
from jobq.cli import configure_logging
from workers import Worker
configure_logging(True, "json", logging.DEBUG)
url, concurrency, lease = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
with Queue(url) as q:
    Worker(q, concurrency=concurrency, lease_seconds=lease, max_crashes=1000).run()
"""
PRODUCER = "import sys, torture_tasks; torture_tasks.produce(sys.argv[1:])"


class Drain:
    """Jobs with known sums, the workers running them, and the end check."""

    def __init__(self, url: str, tmp_path: Path, children: Children, jobs: int, *,
                 seed: int = 0, steps: tuple[int, int] = (4, 8),
                 step_ms: tuple[int, int] = (10, 30)) -> None:
        self.url, self.tmp, self.children = url, tmp_path, children
        self.trails = tmp_path / "trails"
        self.trails.mkdir()
        self.rng = random.Random(seed)
        self.specs = {f"job-{i:04d}": (self.rng.randint(*steps), self.rng.randint(1, 1000),
                                       self.rng.randint(*step_ms)) for i in range(jobs)}
        self.workers: list[WorkerProcess] = []
        self.acked: set[str] = set()
        self.queue = Queue(url)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.queue.close()

    # -- producing ------------------------------------------------------------------------------

    def enqueue(self, ids: list[str] | None = None) -> None:
        """Enqueue from the test's process: each id acknowledged when its call returns."""
        for job_id in ids if ids is not None else list(self.specs):
            n, weight, step_ms = self.specs[job_id]
            self.queue.enqueue_call(torture_tasks.TASK, job_id=job_id, max_attempts=1000,
                                    args=(n, weight, step_ms / 1000, str(self.trails)))
            self.acked.add(job_id)

    def producer(self, ids: list[str], ack_path: Path,
                 pace: float = 0.02) -> subprocess.Popen[str]:
        """A producer process enqueueing ``ids`` (those not acknowledged in ``ack_path`` yet)."""
        done = set(ack_path.read_text().split()) if ack_path.exists() else set()
        specs = [f"{j}:{':'.join(map(str, self.specs[j]))}" for j in ids if j not in done]
        return self.children.start(PRODUCER, self.url, str(self.trails), str(ack_path),
                                   str(pace), str(self.rng.getrandbits(32)), *specs)

    # -- working --------------------------------------------------------------------------------

    def worker(self, url: str | None = None, *, concurrency: int = 2,
               lease: float = 60.0) -> WorkerProcess:
        log = self.tmp / f"worker{len(self.workers)}.log"
        w = WorkerProcess("", log_path=log, command=[
            sys.executable, "-c", WORKER, url or self.url, str(concurrency), str(lease)])
        self.workers.append(w)
        return w

    def events(self, name: str, workers: list[WorkerProcess] | None = None) -> list[dict]:
        return [e for w in (workers or self.workers) for e in w.events(name)]

    def succeeded(self) -> int:
        """Jobs succeeded, asked again while the test's own session reconnects."""
        for _ in range(100):
            try:
                return self.queue.counts()["succeeded"]
            except StorageError as exc:
                if not transient(exc):
                    raise
                time.sleep(0.1)
        pytest.fail("the test's own connection did not come back within 10 s")

    def wait_done(self, timeout: float = 60.0) -> float:
        """Wait until every acknowledged job succeeded; the time it took."""
        started = time.monotonic()
        while (done := self.succeeded()) < len(self.acked):
            for w in self.workers:
                code = w.proc.poll()
                if code not in (None, 0, -9):
                    pytest.fail(f"worker {w.pid} exited {code}: {_tail(w.log_path)}")
            if time.monotonic() - started > timeout:
                stuck = [(s.job_id, s.status.value, s.attempts) for s in self.queue.jobs()
                         if s.status is not Status.SUCCEEDED][:10]
                pytest.fail(f"{done} of {len(self.acked)} jobs succeeded after {timeout} s:"
                            f" {stuck}")
            time.sleep(0.05)
        return time.monotonic() - started

    def running_jobs(self) -> list[tuple[str, str]]:
        """(job id, owner) of the claims being run now."""
        return [(h.job_id, h.owner) for h in self.queue.engine.held() if h.started]

    # -- the end check --------------------------------------------------------------------------

    def check(self) -> collections.Counter[str]:
        """Fail on any acknowledged job not succeeded exactly once, or whose checkpoints went
        backwards; figures: jobs run more than once, runs that resumed, results refused."""
        figures: collections.Counter[str] = collections.Counter()
        problems: list[str] = []
        successes = collections.Counter(e["job_id"] for e in self.events("job.succeeded"))
        for job_id in sorted(self.acked):
            figures += self._check_job(job_id, successes[job_id], problems)
        counts = self.queue.counts()
        if sum(counts.values()) != len(self.acked) or counts["succeeded"] != len(self.acked):
            problems.append(f"the queue holds {counts}, {len(self.acked)} jobs acknowledged")
        figures["refused"] = len(self.events("job.stale_result"))
        figures["reaped"] = sum(1 for e in self.events("job.failed") + self.events("job.queued")
                                if "reaped_from" in e)
        assert not problems, "\n".join(problems[:30])
        return figures

    def _check_job(self, job_id: str, successes: int,
                   problems: list[str]) -> collections.Counter[str]:
        n, weight, _ = self.specs[job_id]
        total = torture_tasks.expected_sum(weight, n)
        figures: collections.Counter[str] = collections.Counter()
        try:
            state = self.queue.state(job_id)
        except JobNotFound:
            problems.append(f"{job_id}: acknowledged, not in the queue")
            return figures
        if state.status is not Status.SUCCEEDED:
            problems.append(f"{job_id}: acknowledged, {state.status.value}: {state.errors[-2:]}")
            return figures
        if state.result != {"sum": total, "attempt": state.attempts} \
                or state.checkpoint != (n, total):
            problems.append(f"{job_id}: result {state.result}, checkpoint {state.checkpoint};"
                            f" expected sum {total} of attempt {state.attempts}")
        if successes > 1:
            problems.append(f"{job_id}: {successes} job.succeeded events: recorded twice")
        figures["unlogged"] += successes == 0  # its commit's answer was lost in an outage
        found, runs, resumes = torture_tasks.check_trail(self.trails / job_id, n, total,
                                                         state.attempts, stale_claims=True)
        problems += [f"{job_id}: {p}" for p in found]
        path = self.trails / job_id
        starts = sum(1 for line in path.read_text().splitlines() if line.startswith("start "))
        figures["stale_runs"] += starts - runs  # of claims reclaimed before they started
        figures["runs"] += runs
        figures["run_twice"] += runs > 1
        figures["resumes"] += resumes
        return figures


def queue_url(port: int, app: str = "jobq", queue: str | None = None) -> str:
    """A new queue's URL on the private cluster (``app``: the sessions' application_name)."""
    return (f"postgresql://postgres@127.0.0.1:{port}/postgres?application_name={app}"
            f"&queue={queue or 'o' + uuid.uuid4().hex[:10]}")


def with_app(url: str, app: str) -> str:
    """The same queue, its sessions named ``app`` (to terminate one worker's)."""
    return url.replace("application_name=jobq", f"application_name={app}")


def terminate(cluster: pg.Cluster, app: str, only_lock: bool = False) -> int:
    """pg_terminate_backend of the sessions of application ``app`` (only the one holding an
    advisory lock: a worker's liveness); how many."""
    lock = (" AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
            if only_lock else "")
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                f" WHERE application_name = %s{lock}", (app,)).fetchall())


def wall(event: dict) -> float:
    """An event's time, in seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def summary(name: str, figures: collections.Counter[str], **more: object) -> str:
    """One line of figures, printed by each test (``pytest -s`` shows them)."""
    items = {**figures, **more}
    line = f"{name}: " + " ".join(f"{k}={v}" for k, v in sorted(items.items()))
    print(line)
    return line


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


MakeDrain = Callable[..., Drain]
