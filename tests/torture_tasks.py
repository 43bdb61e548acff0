"""The crash-torture test's task, its producer, and the check of the task's trail.

The task and the producer run in child processes, which import from tests/ (see
conftest.child_env), so they live here rather than beside tests/reliability/test_crash_torture.py.

Every run of the task appends lines to ``<trail dir>/<job id>``, one ``os.write`` each (O_APPEND:
small appends are never interleaved or torn by a SIGKILL), so the test can rebuild what every
attempt did, in the order it happened::

    start <run> <attempt> <checkpoint step>   the run began, resuming from that checkpoint
    save <run> <attempt> <step>               ctx.save(step) had returned: the checkpoint is durable
    return <run> <attempt> <sum>              the task returned (its result may not be recorded)
    bad-checkpoint <run> <attempt> <step> <sum>   the checkpoint resumed from is inconsistent

``<run>`` is unique per run (an attempt released at shutdown runs again under the same number).
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

from jobq import Queue, current_job

TASK = "torture_tasks:steps"


def step_value(weight: int, i: int) -> int:
    return weight * i + i * i


def expected_sum(weight: int, n: int) -> int:
    return sum(step_value(weight, i) for i in range(1, n + 1))


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def steps(n: int, weight: int, step_seconds: float, trail_dir: str) -> dict[str, int]:
    """Adds ``step_value(weight, i)`` for i = 1..n, one step every ``step_seconds``, saving a
    checkpoint ``(i, sum so far)`` after each step; resumes from the last checkpoint."""
    ctx = current_job()
    trail = os.path.join(trail_dir, ctx.job_id)
    run = os.urandom(4).hex()
    done, total = ctx.checkpoint or (0, 0)
    _append(trail, f"start {run} {ctx.attempt} {done}")
    if total != sum(step_value(weight, i) for i in range(1, done + 1)):
        _append(trail, f"bad-checkpoint {run} {ctx.attempt} {done} {total}")
    for i in range(done + 1, n + 1):
        time.sleep(step_seconds)
        total += step_value(weight, i)
        ctx.save((i, total), progress=i / n)
        _append(trail, f"save {run} {ctx.attempt} {i}")
    _append(trail, f"return {run} {ctx.attempt} {total}")
    return {"sum": total, "attempt": ctx.attempt}


def produce(argv: list[str]) -> None:
    """``produce(queue_dir, trail_dir, ack_path, pace, seed, spec...)``; a spec is
    ``job_id:n:weight:step_ms``, the arguments of :func:`steps`.

    Enqueues each job under its own id and, only once enqueue_call has returned (the record is
    durable), appends the id to ``ack_path``: the acknowledged jobs. Sleeps up to ``pace`` seconds
    between jobs so that production overlaps the chaos.
    """
    queue_dir, trail_dir, ack_path, pace, seed, *specs = argv
    rng = random.Random(seed)
    with Queue(queue_dir) as q:
        for spec in specs:
            job_id, n, weight, step_ms = spec.split(":")
            q.enqueue_call(TASK, args=(int(n), int(weight), int(step_ms) / 1000, trail_dir),
                           job_id=job_id, max_attempts=1000)
            _append(ack_path, job_id)
            time.sleep(rng.uniform(0, float(pace)))


def check_trail(path: Path, n: int, total: int, attempts: int, *,
                stale_claims: bool = False) -> tuple[list[str], int, int]:
    """Problems in one job's trail (the format is in this module's docstring), how many runs it
    shows, and how many of them resumed from a checkpoint.

    A run must resume from the furthest step saved before it (never behind: a checkpoint went
    backwards; at most one step further: a save can commit just before the kill that stops its
    line), save consecutive steps, and the run of the succeeding attempt must be the last one.

    With ``stale_claims``, a run that saved nothing and returned nothing may start from anything
    and at any time: the run of a claim reclaimed before it started (a prefetched claim of a
    worker taken for dead while alive, on PostgreSQL), whose first save was refused.
    """
    problems: list[str] = []
    runs: dict[str, dict] = {}  # in the order they started
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, run, attempt, value, *_ = line.split()
        if kind == "start":
            runs[run] = {"attempt": int(attempt), "start": int(value), "saves": [], "sum": None}
        elif kind == "save":
            runs[run]["saves"].append(int(value))
        elif kind == "return":
            runs[run]["sum"] = int(value)
        else:
            problems.append(f"trail says {line!r}")
    if stale_claims:
        runs = {run: r for run, r in runs.items() if r["saves"] or r["sum"] is not None}
    known = 0  # the furthest step any earlier run started from or saved
    for run, r in runs.items():
        if r["start"] < known:
            problems.append(f"run {run} (attempt {r['attempt']}) resumed from step {r['start']},"
                            f" behind step {known} saved earlier: a checkpoint went backwards")
        if r["start"] > known + 1:  # +1: a save can commit just before a kill stops its line
            problems.append(f"run {run} resumed from step {r['start']}, never saved before")
        if r["saves"] != list(range(r["start"] + 1, r["start"] + 1 + len(r["saves"]))):
            problems.append(f"run {run} saved steps {r['saves']} after starting at {r['start']}")
        if r["sum"] is not None and (r["sum"] != total or r["start"] + len(r["saves"]) != n):
            problems.append(f"run {run} returned {r['sum']}, expected {total}")
        known = max(known, r["start"], *r["saves"])
    winners = [run for run, r in runs.items() if r["attempt"] == attempts and r["sum"] == total]
    if not winners:
        problems.append(f"no run of the succeeding attempt {attempts} returned {total}")
    elif winners[-1] != list(runs)[-1]:
        problems.append(f"a run started after the one that succeeded: {list(runs)}")
    return problems, len(runs), sum(1 for r in runs.values() if r["start"] > 0)


if __name__ == "__main__":
    produce(sys.argv[1:])
