"""``jobq demo``: resumable jobs, real workers, one killed hard mid-job, and the job resuming.

It enqueues a batch of jobs that checkpoint after every step, starts two workers, SIGKILLs one of
them (with its children) in the middle of a job, starts a third, and shows the interrupted job
carrying on from its last checkpoint while every job finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TextIO

from . import current_job
from .queue import Queue
from .state import Status

STEPS = 20
STEP_SECONDS = 0.1
JOBS = 4


def resumable_sum(n: int, step_seconds: float = 0.0) -> dict[str, int]:
    """Adds 1..n one step at a time, checkpointing after each step.

    Returns the sum and the step this attempt started from (0 unless it resumed). After each save
    it checks ``ctx.stopping``: once its worker is asked to stop (SIGTERM), ``ctx.release()`` ends
    the attempt, uncharged, and the job resumes from that save on the next worker, instead of the
    worker waiting out its shutdown grace. A crash after a save is not charged either.
    """
    ctx = current_job()
    step, total = ctx.checkpoint or (0, 0)
    resumed_from = step
    while step < n:
        step += 1
        total += step
        time.sleep(step_seconds)  # stands in for real work
        ctx.save((step, total), progress=step / n)
        if ctx.stopping:  # the worker is shutting down: resume elsewhere from this save
            ctx.release()
    return {"sum": total, "resumed_from": resumed_from, "attempt": ctx.attempt}


class _Worker:
    """A ``jobq worker`` process in its own session, so it can be killed with its children."""

    def __init__(self, name: str, queue: Queue, log_dir: str, *args: str) -> None:
        script = Path(sys.executable).parent / "jobq"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "jobq.cli"]
        self.name = name
        self._log = open(os.path.join(log_dir, f"{name}.log"), "wb")
        self.proc = subprocess.Popen([*command, "worker", "--dir", queue.path, *args],
                                     stdout=subprocess.DEVNULL, stderr=self._log,
                                     start_new_session=True)

    def owns(self, owner: str | None) -> bool:
        return bool(owner) and f"-{self.proc.pid}-" in str(owner)

    def kill_hard(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_hard()
        self._log.close()


def _wait_for(predicate, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    raise TimeoutError("the demo waited too long; see the worker logs")


def main(directory: str | None, out: TextIO) -> int:
    with Queue(directory) as queue, tempfile.TemporaryDirectory(prefix="jobq-demo-") as logs:
        return run(queue, logs, out)


def run(queue: Queue, logs: str, out: TextIO) -> int:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    run_id = uuid.uuid4().hex[:6]
    ids = [queue.enqueue_call(resumable_sum, args=(STEPS, STEP_SECONDS), job_id=f"demo-{run_id}-{i}")
           for i in range(JOBS)]
    say(f"Queue directory: {queue.path}")
    say(f"Enqueued {JOBS} jobs; each adds 1..{STEPS}, one step every {STEP_SECONDS:g} s, and"
        " saves a checkpoint after every step.")
    a, b = _Worker("worker-a", queue, logs, "-c", "2"), _Worker("worker-b", queue, logs)
    started = [a, b]
    try:
        say(f"Started worker A (pid {a.proc.pid}, 2 children) and worker B (pid {b.proc.pid}).")

        def victim():  # type: ignore[no-untyped-def]
            return next((r for r in queue.engine.rows(Status.RUNNING)
                         if a.owns(r["owner"]) and r["progress"] >= 0.3), None)
        row = _wait_for(victim, 60)
        job, step = row["job_id"], (queue.state(row["job_id"]).checkpoint or (0, 0))[0]
        a.kill_hard()
        say(f"Killed worker A and its children with SIGKILL while job {job} was at step {step}"
            f" of {STEPS}.")
        c = _Worker("worker-c", queue, logs)
        started.append(c)
        say(f"Started worker C (pid {c.proc.pid}).")
        _wait_for(lambda: all(queue.engine.status(j).finished for j in ids), 120)
    finally:
        for w in started:
            w.stop()
    return _report(queue, ids, job, step, say)


def _report(queue: Queue, ids: list[str], job: str, step: int, say) -> int:  # type: ignore[no-untyped-def]
    expected = STEPS * (STEPS + 1) // 2
    good = True
    say("")
    for jid in ids:
        state = queue.state(jid)
        result = state.result or {}
        good &= state.status is Status.SUCCEEDED and result.get("sum") == expected
        note = ""
        if jid == job:
            good &= result.get("resumed_from", 0) >= step > 0
            # The killed attempt had saved a checkpoint, so it was not charged: still attempt 1.
            note = (f"  <- interrupted at step {step}; resumed from step"
                    f" {result.get('resumed_from')} instead of starting over")
        elif result.get("resumed_from"):
            note = f"  <- also on worker A; resumed from step {result.get('resumed_from')}"
        say(f"  {jid}  {state.status.value:<9}  sum {result.get('sum')}  attempts"
            f" {state.attempts}{note}")
    say("")
    say(f"Every job finished with the right sum ({expected}), and the killed job lost only the"
        " work after its last checkpoint." if good else "Demo FAILED: see the states above.")
    return 0 if good else 1
