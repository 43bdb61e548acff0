"""Crash torture on PostgreSQL: SIGKILLs, terminated sessions and server restarts, mixed.

Producers (processes) enqueue resumable jobs under their own ids, acknowledging each once
``enqueue_call`` returned; several workers, each with its own connections (as if on its own
host, told apart by ``application_name``), run them. A chaos loop driven by a seeded
``random.Random`` SIGKILLs a whole worker, one child or a producer, terminates all of a worker's
sessions (``pg_terminate_backend``), or restarts the private server, and replaces what it
killed; a producer that died (killed, or stopped by a StorageError in a restart) is started
again and enqueues the ids it had not acknowledged. Then every acknowledged job must have
succeeded exactly once and no checkpoint may have gone backwards (outage_kit.Drain.check).

The CI run is bounded (80 jobs, 10 events); ``JOBQ_SOAK=1`` adds the long one. The seed
is printed; ``JOBQ_TORTURE_SEED=N`` replays the chaos decisions (process timing still varies).
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torture_tasks
from conftest import SOAK_ONLY, WorkerProcess, wait_until

import pg

from .outage_kit import MakeDrain, summary, terminate, with_app


@dataclass(frozen=True)
class Plan:
    jobs: int
    events: int
    restarts: int  # at most this many server restarts among the events
    producers: int = 2
    workers: int = 3
    concurrency: int = 2
    pause: tuple[float, float] = (0.1, 0.4)  # seconds between two events
    pace: float = 0.12  # a producer sleeps up to this between two enqueues: into the chaos
    drain_timeout: float = 90.0


CI = Plan(jobs=80, events=10, restarts=1)
SOAK = Plan(jobs=2000, events=300, restarts=10, producers=4, drain_timeout=900.0)
EVENTS = {"worker": 2, "child": 2, "producer": 2, "terminate": 2, "restart": 1}


def test_torture(make_drain: MakeDrain, pg_cluster: pg.Cluster, seed: int) -> None:
    """CI size: nothing acknowledged is lost or succeeds twice, no checkpoint goes back."""
    Chaos(CI, make_drain, pg_cluster, seed).run()


@pytest.mark.soak
@pytest.mark.timeout(3600)
@SOAK_ONLY
def test_torture_soak(make_drain: MakeDrain, pg_cluster: pg.Cluster, seed: int) -> None:
    """Soak size: 2,000 jobs and 300 events."""
    Chaos(SOAK, make_drain, pg_cluster, seed).run()


@pytest.mark.parametrize("trail, problem", [
    ("start a 1 0|save a 1 1|save a 1 2|return a 1 {sum}|start b 1 0", None),
    ("start a 1 0|save a 1 1|start b 1 0|save b 1 2|return b 1 {sum}", "went backwards"),
    ("start a 1 0|save a 1 1|save a 1 2|return a 1 {sum}|start b 2 0|return b 2 {sum}",
     "after the one"),
], ids=["stale-run", "stale-run-that-saved", "stale-run-that-returned"])
def test_trail_check_lets_a_stale_claim_start_anywhere_but_do_nothing(
        tmp_path: Path, trail: str, problem: str | None) -> None:
    """A run that saved and returned nothing may start behind and late (its claim was taken
    back before it started); any other is held to the rules."""
    total = torture_tasks.expected_sum(1, 2)
    path = tmp_path / "job"
    path.write_text(trail.format(sum=total).replace("|", "\n") + "\n")
    problems, _, _ = torture_tasks.check_trail(path, 2, total, 1, stale_claims=True)
    assert (problems == []) if problem is None else any(problem in p for p in problems)


class Chaos:
    """One run: producers, workers, events, and the check."""

    def __init__(self, plan: Plan, make: MakeDrain, cluster: pg.Cluster, seed: int) -> None:
        self.plan, self.cluster, self.seed = plan, cluster, seed
        self.rng = random.Random(seed)
        self.drain = make(plan.jobs, seed=seed, steps=(3, 8), step_ms=(5, 25))
        ids = sorted(self.drain.specs)
        self.shares = [ids[k::plan.producers] for k in range(plan.producers)]
        self.acks = [self.drain.tmp / f"acks{k}" for k in range(plan.producers)]
        self.producers: list[subprocess.Popen[str] | None] = [None] * plan.producers
        self.live: dict[str, WorkerProcess] = {}  # application name -> worker
        self.tally: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        started = time.monotonic()
        for k in range(self.plan.producers):
            self._produce(k)
        for _ in range(self.plan.workers):
            self._new_worker()
        for _ in range(self.plan.events):
            time.sleep(self.rng.uniform(*self.plan.pause))
            self._event()
            self._restart_producers()
        self._finish_producers()
        self.drain.wait_done(self.plan.drain_timeout)
        figures = self.drain.check()
        for w in self.live.values():
            w.proc.send_signal(signal.SIGTERM)
        for w in self.live.values():
            assert w.wait(30) == 0, w.log_path.read_text()[-2000:]
        summary("torture", figures, seed=self.seed, events=dict(self.tally),
                time=f"{time.monotonic() - started:.1f}s")

    # -- processes ----------------------------------------------------------------------------

    def _produce(self, k: int) -> None:
        self.producers[k] = self.drain.producer(self.shares[k], self.acks[k],
                                                pace=self.plan.pace)

    def _acked(self, k: int) -> set[str]:
        text = self.acks[k].read_text() if self.acks[k].exists() else ""
        lines = text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]
        return set(lines)

    def _restart_producers(self) -> None:
        """Start again each producer that stopped short: killed, or failed in an outage (whose
        error must name the server)."""
        for k, proc in enumerate(self.producers):
            if proc is None or proc.poll() is None or proc.returncode == 0:
                continue
            _, err = proc.communicate()
            if proc.returncode != -signal.SIGKILL:
                assert f"PostgreSQL at 127.0.0.1:{self.cluster.port}/" in err, err[-2000:]
                self.tally["producer_errors"] += 1
            if set(self.shares[k]) - self._acked(k):
                self._produce(k)

    def _finish_producers(self) -> None:
        while any(set(share) - self._acked(k) for k, share in enumerate(self.shares)):
            for proc in self.producers:
                if proc is not None and proc.poll() is None:
                    proc.wait(timeout=120)
            self._restart_producers()
        self.drain.acked = set().union(*(self._acked(k) for k in range(self.plan.producers)))

    def _new_worker(self) -> None:
        """Start a worker, and let it start before the next event (a worker cannot open its
        queue in an outage: it exits, naming the server)."""
        app = f"w{len(self.drain.workers)}"
        w = self.live[app] = self.drain.worker(with_app(self.drain.url, app),
                                               concurrency=self.plan.concurrency)
        wait_until(lambda: w.events("worker.started"))

    # -- events -------------------------------------------------------------------------------

    def _event(self) -> None:
        kinds = dict(EVENTS)
        if self.tally["restart"] >= self.plan.restarts:
            del kinds["restart"]
        if not any(p is not None and p.poll() is None for p in self.producers):
            del kinds["producer"]
        kind = self.rng.choices(list(kinds), weights=list(kinds.values()))[0]
        app = self.rng.choice(sorted(self.live))
        if kind == "worker":
            self.live.pop(app).kill_all()
            self._new_worker()
        elif kind == "child":
            pids = _child_pids(self.live[app].pid)
            if not pids:
                return
            os.kill(self.rng.choice(pids), signal.SIGKILL)
        elif kind == "producer":
            running = [p for p in self.producers if p is not None and p.poll() is None]
            self.rng.choice(running).kill()
        elif kind == "terminate":
            terminate(self.cluster, app)
        else:
            self.cluster.restart()
        self.tally[kind] += 1


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
