"""``jobq demo``: resumable jobs on a real queue directory, from enqueue to result.

Until the worker runtime lands, the demo runs its jobs in this process (``jobq.testing.run_burst``),
through the same code path a worker child uses. One job is interrupted half-way on its first
attempt and resumes from its last checkpoint on the second.
"""

from __future__ import annotations

import time
import uuid
from typing import TextIO

from . import current_job
from .queue import Queue
from .state import Status
from .testing import run_burst

STEPS = 20


def resumable_sum(n: int, interrupt_at: int | None = None) -> dict[str, int]:
    """Adds 1..n one step at a time, checkpointing after each step.

    Returns the sum and the step the successful attempt started from (0 unless it resumed).
    """
    ctx = current_job()
    step, total = ctx.checkpoint or (0, 0)
    resumed_from = step
    while step < n:
        step += 1
        total += step
        time.sleep(0.005)  # stands in for real work
        ctx.save((step, total), progress=step / n)
        if step == interrupt_at and ctx.attempt == 1:
            raise RuntimeError(f"simulated crash after step {step}")
    return {"sum": total, "resumed_from": resumed_from}


def run(queue: Queue, out: TextIO) -> int:
    run_id = uuid.uuid4().hex[:8]
    say = lambda text: print(text, file=out)  # noqa: E731
    say(f"Queue directory: {queue.path}")
    ids = [queue.enqueue_call(resumable_sum, args=(STEPS,), job_id=f"demo-{run_id}-{i}")
           for i in range(4)]
    flaky = queue.enqueue_call(resumable_sum, args=(STEPS, STEPS // 2), job_id=f"demo-{run_id}-4")
    ids.append(flaky)
    say(f"Enqueued {len(ids)} resumable jobs, each adding 1..{STEPS} with a checkpoint per step.")
    say(f"Job {flaky} will fail half-way through its first attempt.")
    ran = run_burst(queue, retry_delay=lambda attempt: 0.0)
    say(f"Ran {ran} attempts in this process.")
    flaky_state = queue.state(flaky)
    first_error = (flaky_state.errors or ["none"])[0].strip().splitlines()[-1]
    say(f"Job {flaky}: attempt 1 failed ({first_error});")
    resumed_from = queue.result(flaky)["resumed_from"]
    say(f"  attempt {flaky_state.attempts} resumed from its checkpoint at step {resumed_from}"
        f" of {STEPS} instead of starting over, and {flaky_state.status.value}.")
    expected = STEPS * (STEPS + 1) // 2
    sums = {jid: queue.result(jid)["sum"] for jid in ids}
    good = all(value == expected for value in sums.values()) and resumed_from == STEPS // 2
    say(f"Sums: {sorted(set(sums.values()))} (expected {expected} for every job).")
    counts = {k: v for k, v in queue.counts().items() if v}
    say(f"Queue now holds: {counts}")
    ok = good and all(queue.state(j).status is Status.SUCCEEDED for j in ids)
    say("Demo finished: every job succeeded." if ok else "Demo FAILED: see the states above.")
    return 0 if ok else 1
