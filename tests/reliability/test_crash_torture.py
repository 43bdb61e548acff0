"""Crash torture: SIGKILLs at random moments lose no acknowledged job and undo no checkpoint.

Producers (child interpreters) enqueue resumable jobs, each under its own id, and acknowledge a
job (a line in their ack file) only once ``enqueue_call`` has returned. Real ``jobq worker -c 2``
processes run the jobs, which save a checkpoint after every step. A chaos loop driven by a seeded
``random.Random`` SIGKILLs, at random moments, a whole worker (supervisor and children at once, as
a power cut would), one child, a supervisor alone, or a producer, and replaces what it killed; a
restarted producer enqueues again every job it had not acknowledged (idempotent ids make that
safe). Then every acknowledged job must have succeeded exactly once with the right result, no
checkpoint may have gone backwards, and the queue must verify clean.

Sizes: the CI run is bounded (about 300 jobs and 30 kills); ``JOBQ_SOAK=1`` adds the long one.
Every run prints its seed; ``JOBQ_TORTURE_SEED=N`` replays the same chaos decisions (process timing
still varies). These are environment variables, not pytest options: a ``conftest.py`` here would
shadow tests/conftest.py for every ``from conftest import ...``, and pytest only registers the
options of a sub-directory conftest when that directory is named on the command line.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torture_tasks
from conftest import SOAK_ONLY, wait_until

from jobq import Queue, Status
from jobq.errors import JobNotFound
from jobq.maintenance import verify

if TYPE_CHECKING:
    from conftest import Children, WorkerProcess

PRODUCER = "import sys, torture_tasks; torture_tasks.produce(sys.argv[1:])"


@dataclass(frozen=True)
class Plan:
    """How big a torture run is."""

    jobs: int
    kills: int
    producers: int = 3
    workers: int = 3  # kept alive: each one killed is replaced at once
    concurrency: int = 2
    pause: tuple[float, float] = (0.05, 0.3)  # seconds between two kills
    pace: float = 0.08  # a producer sleeps up to this between two enqueues
    steps: tuple[int, int] = (5, 20)  # checkpoints per job
    step_ms: tuple[int, int] = (5, 20)
    drain_timeout: float = 60.0  # after the chaos, for the last jobs to finish


CI = Plan(jobs=300, kills=30)
SOAK = Plan(jobs=5000, kills=300, producers=5, pause=(0.1, 0.6), pace=0.1, drain_timeout=600.0)

# What the chaos loop kills, with weights: producers only while one is still enqueueing.
PRODUCER_SHARE = 0.2
WORKER_KILLS = {"worker": 6, "child": 3, "supervisor": 1}
BUSY_SHARE = 0.8  # of worker kills aimed at a worker running jobs (the rest: any live worker)
BUSY_WAIT = 5.0  # seconds to wait for a busy worker to aim at


def test_crash_torture(queue, workers, children, tmp_path, seed):
    """CI size: about 300 jobs and 30 SIGKILLs; nothing lost, nothing run to success twice."""
    _torture(CI, queue, workers, children, tmp_path, seed)


@pytest.mark.soak
@pytest.mark.timeout(3600)
@SOAK_ONLY
def test_crash_torture_soak(queue, workers, children, tmp_path, seed):
    """Soak size: 5,000 jobs and 300 SIGKILLs."""
    _torture(SOAK, queue, workers, children, tmp_path, seed)


@pytest.mark.parametrize("trail, problem", [
    ("start a 1 0|save a 1 1|save a 1 2|start b 2 2|save b 2 3|return b 2 {sum}", None),
    ("start a 1 0|save a 1 1|start b 2 2|save b 2 3|return b 2 {sum}", None),  # 2 saved unlogged
    ("start a 1 0|save a 1 1|save a 1 2|start b 2 1|save b 2 2|save b 2 3|return b 2 {sum}",
     "went backwards"),
    ("start a 1 0|save a 1 1|start b 2 3|return b 2 {sum}", "never saved before"),
    ("start a 1 0|save a 1 1|save a 1 3|save a 1 3|return a 1 {sum}", "saved steps"),
    ("start a 1 0|save a 1 1|save a 1 2|save a 1 3|return a 1 {sum}|start b 1 3", "after the one"),
    ("start a 1 0|save a 1 1|save a 1 2|save a 1 3|return a 1 7", "returned 7"),
], ids=["resumed", "resumed-after-unlogged-save", "backwards", "from-nowhere", "skipped-step",
        "ran-after-success", "wrong-sum"])
def test_trail_check_catches_what_it_must(tmp_path, trail, problem):
    """The trail check accepts resumes from the last checkpoint and flags everything else."""
    n, weight = 3, 1
    total = torture_tasks.expected_sum(weight, n)
    path = tmp_path / "job"
    path.write_text(trail.format(sum=total).replace("|", "\n") + "\n")
    attempts = max(int(line.split()[2]) for line in path.read_text().splitlines())
    problems, _, _ = torture_tasks.check_trail(path, n, total, attempts)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems


def _torture(plan: Plan, queue: Queue, start_worker: Callable[..., WorkerProcess],
             children: Children, tmp_path: Path, seed: int) -> None:
    run = Torture(plan, queue, start_worker, children, tmp_path, seed)
    started = time.monotonic()
    run.start()
    run.chaos()
    chaos_ended, done = time.monotonic(), run.queue.counts()["succeeded"]
    run.finish_producers()
    run.drain()
    run.stop_workers()
    figures, problems = run.check()
    figures["time"] = (f"{time.monotonic() - started:.1f}s (chaos {chaos_ended - started:.1f}s,"
                       f" {done} jobs done by then)")
    summary = "torture: " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems[:40])
    assert figures["lost"] == 0 and figures["duplicates"] == 0, summary


@dataclass
class Producer:
    """One producer slot: its jobs, its ack file, and its current process."""

    name: str
    specs: list[str]  # "job_id:n:weight:step_ms"
    ack_path: Path
    proc: subprocess.Popen[str] | None = None

    def acked(self) -> set[str]:
        if not self.ack_path.exists():
            return set()
        text = self.ack_path.read_text()
        return set(text.splitlines() if text.endswith("\n") else text.splitlines()[:-1])

    def remaining(self) -> list[str]:
        done = self.acked()
        return [s for s in self.specs if s.split(":")[0] not in done]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Tally:
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: int = 0
    orphans_to_check: list[int] = field(default_factory=list)


class Torture:
    """One run: processes, chaos, and the checks at the end."""

    def __init__(self, plan: Plan, queue: Queue, start_worker: Callable[..., WorkerProcess],
                 children: Children, tmp_path: Path, seed: int) -> None:
        self.plan, self.queue, self.seed = plan, queue, seed
        self._start_worker, self.children = start_worker, children
        self.rng = random.Random(seed)
        self.trails = tmp_path / "trails"
        self.trails.mkdir()
        self.acks = tmp_path / "acks"
        self.acks.mkdir()
        self.specs = self._make_specs()
        self.live: list[WorkerProcess] = []
        self.all_workers: list[WorkerProcess] = []
        self.killed: set[int] = set()  # indexes into all_workers of workers killed mid-run
        # (index into all_workers, time.time()) of each child killed alone: its worker lives on
        self.child_kills: list[tuple[int, float]] = []
        self.producers: list[Producer] = []
        self.tally = Tally()
        self.problems: list[str] = []
        self.seen_progress: dict[str, float] = {}
        self.seen_checkpoint: dict[str, int] = {}

    def _make_specs(self) -> dict[str, tuple[int, int, int]]:
        p = self.plan
        return {f"job-{i:05d}": (self.rng.randint(*p.steps), self.rng.randint(1, 1000),
                                 self.rng.randint(*p.step_ms)) for i in range(p.jobs)}

    # -- processes ---------------------------------------------------------------------------

    def start(self) -> None:
        ids = list(self.specs)
        for k in range(self.plan.producers):
            mine = [f"{j}:{':'.join(map(str, self.specs[j]))}" for j in ids[k::self.plan.producers]]
            producer = Producer(f"p{k}", mine, self.acks / f"p{k}")
            self.producers.append(producer)
            self._run_producer(producer)
        for _ in range(self.plan.workers):
            self._new_worker()

    def _run_producer(self, producer: Producer) -> None:
        specs = producer.remaining()
        if specs:
            producer.proc = self.children.start(
                PRODUCER, self.queue.path, str(self.trails), str(producer.ack_path),
                str(self.plan.pace), str(self.rng.getrandbits(32)), *specs)

    def _new_worker(self) -> None:
        w = self._start_worker(self.queue.path, "-c", str(self.plan.concurrency),
                               "--max-crashes", "1000")
        self.live.append(w)
        self.all_workers.append(w)

    # -- chaos -------------------------------------------------------------------------------

    def chaos(self) -> None:
        """Kill something at random moments until the planned number of kills is reached."""
        while self._kills() < self.plan.kills:
            time.sleep(self.rng.uniform(*self.plan.pause))
            self._check_processes()
            self.sample()
            enqueueing = [p for p in self.producers if p.running]
            if enqueueing and self.rng.random() < PRODUCER_SHARE:
                self._kill_producer(self.rng.choice(enqueueing))
                continue
            victim = self._pick_worker()
            kind = self.rng.choices(list(WORKER_KILLS), weights=list(WORKER_KILLS.values()))[0]
            if kind == "child" and not _child_pids(victim.pid):
                kind = "worker"  # still starting up: no child to kill yet
            getattr(self, f"_kill_{kind}")(victim)

    def _pick_worker(self) -> WorkerProcess:
        """Mostly a worker running jobs (waiting a little for one, on a slow machine); sometimes
        any live worker, which may still be starting."""
        if self.rng.random() < BUSY_SHARE:
            deadline = time.monotonic() + BUSY_WAIT
            while not (busy := self._busy()) and time.monotonic() < deadline \
                    and self.queue.counts()["succeeded"] < self.plan.jobs:
                time.sleep(0.02)
            if busy:
                self.tally.kills["busy"] += 1
                return self.rng.choice(busy)
        return self.rng.choice(self.live)

    def _busy(self) -> list[WorkerProcess]:
        """Live workers that own a running job (a worker id is ``host-pid-random``)."""
        owners = {int(owner.rsplit("-", 2)[1]) for _, _, owner, _ in self.queue.store.running()}
        return [w for w in self.live if w.pid in owners]

    def _kills(self) -> int:
        return sum(n for kind, n in self.tally.kills.items() if kind != "busy")

    def _kill_producer(self, producer: Producer) -> None:
        assert producer.proc is not None
        producer.proc.kill()
        producer.proc.wait(timeout=30)
        producer.proc = None
        self.tally.kills["producer"] += 1
        self._run_producer(producer)  # the restarted producer enqueues what was not acknowledged

    def _kill_worker(self, w: WorkerProcess) -> None:
        w.kill_all()
        self._replace(w, "worker")

    def _kill_supervisor(self, w: WorkerProcess) -> None:
        self.tally.orphans_to_check += _child_pids(w.pid)
        os.kill(w.pid, signal.SIGKILL)  # its children must die with it (PDEATHSIG)
        w.wait(timeout=30)
        self._replace(w, "supervisor")

    def _kill_child(self, w: WorkerProcess) -> None:
        pid = self.rng.choice(_child_pids(w.pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended on its own just now: that still counts as a moment chosen at random
        self.tally.kills["child"] += 1
        self.child_kills.append((self.all_workers.index(w), time.time()))

    def _replace(self, w: WorkerProcess, kind: str) -> None:
        self.tally.kills[kind] += 1
        self.killed.add(self.all_workers.index(w))
        self.live.remove(w)
        self._new_worker()

    def _check_processes(self) -> None:
        """A worker that exits, or a producer that fails, without being killed is a bug."""
        for w in self.live:
            if w.proc.poll() is not None:
                pytest.fail(f"worker {w.pid} exited on its own with {w.proc.returncode}:"
                            f" {_tail(w.log_path)} (seed={self.seed})")
        for p in self.producers:
            if p.proc is not None and p.proc.poll() not in (None, 0):
                _, err = p.proc.communicate()
                pytest.fail(f"producer {p.name} failed with {p.proc.returncode}: {err[-2000:]}"
                            f" (seed={self.seed})")

    def sample(self) -> None:
        """Progress of every job and the checkpoint of every running one never go back."""
        self.tally.samples += 1
        for row in self.queue.store.rows(limit=self.plan.jobs + 1, newest_first=False):
            before = self.seen_progress.get(row["job_id"], 0.0)
            if row["progress"] < before:
                self.problems.append(f"{row['job_id']}: progress went back from {before} to"
                                     f" {row['progress']}")
            self.seen_progress[row["job_id"]] = max(before, row["progress"])
        for job_id, *_ in self.queue.store.running():
            checkpoint = self.queue.store.get(job_id).checkpoint
            step = checkpoint[0] if checkpoint else 0
            before = self.seen_checkpoint.get(job_id, 0)
            if step < before:
                self.problems.append(f"{job_id}: checkpoint went back from step {before} to"
                                     f" {step}")
            self.seen_checkpoint[job_id] = max(before, step)

    # -- the end -----------------------------------------------------------------------------

    def finish_producers(self) -> None:
        """Let every producer finish (restarting any killed one) until every job is acknowledged."""
        for p in self.producers:
            while p.remaining():
                if not p.running:
                    self._run_producer(p)
                assert p.proc is not None
                try:
                    p.proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"producer {p.name} hung (seed={self.seed})")
                self._check_processes()

    def drain(self) -> None:
        """Wait until every job has finished; fail if one ends anything but succeeded."""
        deadline = time.monotonic() + self.plan.drain_timeout
        while True:
            counts = self.queue.counts()
            if counts["succeeded"] >= self.plan.jobs:
                return
            if counts["dead"] or counts["cancelled"]:
                bad = [s for s in self.queue.jobs() if s.status in (Status.DEAD, Status.CANCELLED)]
                pytest.fail(f"jobs ended {bad[0].status}: {bad[0].job_id}: {bad[0].errors[-3:]}"
                            f" (seed={self.seed})")
            if time.monotonic() > deadline:
                stuck = [(s.job_id, s.status.value, s.attempts, s.checkpoint)
                         for s in self.queue.jobs() if s.status is not Status.SUCCEEDED]
                pytest.fail(f"jobs still unfinished after {self.plan.drain_timeout} s: {counts};"
                            f" {stuck[:10]}; running (job, claim, owner, lease):"
                            f" {self.queue.store.running()[:10]}; live workers"
                            f" {[w.pid for w in self.live]} (seed={self.seed})")
            self._check_processes()
            self.sample()
            time.sleep(0.1)

    def stop_workers(self) -> None:
        """SIGTERM every live worker: each must exit 0 promptly (nothing is left running)."""
        for w in self.live:
            # One started just now may not have its handler yet: SIGTERM would kill it outright.
            wait_until(functools.partial(_started, w), timeout=30)
            w.proc.send_signal(signal.SIGTERM)
        for w in self.live:
            try:
                code = w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.problems.append(f"worker {w.pid} did not stop within 30 s of SIGTERM")
                continue
            if code != 0:
                self.problems.append(f"worker {w.pid} exited {code}: {_tail(w.log_path)}")
        for pid in self.tally.orphans_to_check:
            if _alive(pid):
                self.problems.append(f"child {pid} outlived its SIGKILLed supervisor")

    def check(self) -> tuple[dict[str, object], list[str]]:
        """Check every job against its trail and the workers' logs; return figures and problems."""
        acknowledged = set().union(*(p.acked() for p in self.producers))
        logs = [_read_events(w.log_path) for w in self.all_workers]
        successes = collections.Counter(e["job_id"] for events, _ in logs for e in events
                                        if e["event"] == "job.succeeded")
        figures = collections.Counter()
        figures["reaped"] = sum(1 for events, _ in logs for e in events if "reaped_from" in e)
        warnings = collections.Counter(e["event"] for events, _ in logs for e in events
                                       if e.get("level") in ("warning", "error", "critical"))
        for job_id in sorted(acknowledged):
            figures += self._check_job(job_id, successes[job_id], logs)
        self._check_queue(figures)
        kills = self.tally.kills
        workers_killed = kills["worker"] + kills["child"] + kills["supervisor"]
        return {"jobs": self.plan.jobs, "acknowledged": len(acknowledged),
                "kills": f"{self._kills()} (workers {workers_killed}: whole"
                         f" {kills['worker']} child {kills['child']} supervisor"
                         f" {kills['supervisor']}, {kills['busy']} aimed at busy ones;"
                         f" producers {kills['producer']})",
                "interrupted": figures["interrupted"], "uncharged": figures["uncharged"],
                "reaped": figures["reaped"],
                "runs": figures["runs"],
                "resumes": figures["resumes"], "lost": figures["lost"],
                "duplicates": figures["duplicates"], "unlogged": figures["unlogged"],
                "quarantined": figures["quarantined"],
                "torn_log_lines": sum(torn for _, torn in logs),
                "warnings": dict(warnings) or 0, "samples": self.tally.samples,
                "seed": self.seed}, self.problems

    def _check_job(self, job_id: str, successes: int,
                   logs: list[tuple[list[dict], int]]) -> collections.Counter[str]:
        n, weight, _ = self.specs[job_id]
        total = torture_tasks.expected_sum(weight, n)
        figures: collections.Counter[str] = collections.Counter()
        try:
            state = self.queue.state(job_id)
        except JobNotFound:
            self.problems.append(f"{job_id}: acknowledged but not in the queue")
            figures["lost"] += 1
            return figures
        if state.status is not Status.SUCCEEDED:
            self.problems.append(f"{job_id}: acknowledged but {state.status}: {state.errors[-3:]}")
            figures["lost"] += 1
            return figures
        if state.result != {"sum": total, "attempt": state.attempts} \
                or state.checkpoint != (n, total) or state.progress != 1.0:
            self.problems.append(f"{job_id}: wrong end state: result {state.result}, checkpoint"
                                 f" {state.checkpoint}, progress {state.progress}; expected sum"
                                 f" {total} at attempt {state.attempts}")
        # A crash after the attempt saved a new checkpoint is not charged; others are, each one
        # an attempt and a crash.
        charged = [e for e in state.errors if " interrupted: " in e]
        free = [e for e in state.errors if " interrupted after saving a checkpoint (not charged): "
                in e]
        unexpected = [e for e in state.errors if e not in charged and e not in free]
        if unexpected or state.crashes != state.attempts - 1 or len(charged) != state.crashes:
            self.problems.append(f"{job_id}: {state.attempts} attempts, {state.crashes} crashes;"
                                 f" errors other than crashes: {unexpected[:2]}")
        figures["interrupted"] += state.crashes
        figures["uncharged"] += len(free)
        if successes > 1:
            self.problems.append(f"{job_id}: {successes} job.succeeded events")
            figures["duplicates"] += 1
        elif successes == 0:
            if self._success_unlogged_by_killed_worker(job_id, state.attempts, logs):
                figures["unlogged"] += 1
            else:
                self.problems.append(f"{job_id}: succeeded without a job.succeeded event")
        trail_problems, runs, resumes = torture_tasks.check_trail(self.trails / job_id, n, total,
                                                                 state.attempts)
        self.problems += [f"{job_id}: {p}" for p in trail_problems]
        figures["runs"] += runs
        figures["resumes"] += resumes
        return figures

    def _success_unlogged_by_killed_worker(self, job_id: str, attempt: int,
                                          logs: list[tuple[list[dict], int]]) -> bool:
        """A worker SIGKILLed between committing a success and writing its event leaves no event;
        then the worker that logged the claim of the succeeding attempt was one we killed, or one
        whose child we killed after that claim (a child commits, then logs its batch's events).

        An attempt interrupted after a new checkpoint is not charged, so several claims may log
        the same attempt number: the succeeding one is the last of them (nothing claims the job
        after it succeeded)."""
        claims = [(e["timestamp"], index) for index, (events, _) in enumerate(logs)
                  for e in events if e["event"] == "job.claimed" and e["job_id"] == job_id
                  and e["attempt"] == attempt]
        if not claims:
            return False
        stamp, index = max(claims)
        claimed_at = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        return index in self.killed or any(
            worker == index and killed_at >= claimed_at for worker, killed_at in self.child_kills)

    def _check_queue(self, figures: collections.Counter[str]) -> None:
        counts = self.queue.counts()
        if sum(counts.values()) != self.plan.jobs:
            self.problems.append(f"the queue holds {sum(counts.values())} jobs, not"
                                 f" {self.plan.jobs}: {counts}")
        report = verify(self.queue)
        figures["quarantined"] = len(self.queue.store.quarantined())
        if not report.ok or report.torn_tail:
            self.problems.append(f"verify: {report}")
        if report.damaged_ranges > self.tally.kills["producer"]:
            self.problems.append(f"{report.damaged_ranges} damaged ranges in the log, but only"
                                 f" {self.tally.kills['producer']} producers were killed")


def _child_pids(pid: int) -> list[int]:
    pids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(p) for p in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _started(w: WorkerProcess) -> bool:
    return b'"worker.started"' in w.log_path.read_bytes()


def _read_events(path: Path) -> tuple[list[dict], int]:
    """A worker's JSON events, and how many lines were torn (a SIGKILL mid-write)."""
    events, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                torn += 1
    return events, torn


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
