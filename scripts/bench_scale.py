#!/usr/bin/env python3
"""jobq at scale: a big queue against a 1,000-job one, each figure next to its baseline in one run.

Usage::

    python scripts/bench_scale.py [--quick] [--jobs N] [--json PATH]

Target 7 of the issue asks that with 1,000,000 jobs queued a claim and a worker's memory cost at
most 1.5x what they cost with 1,000 queued, that opening a queue whose log holds a million records
takes at most 1 s, and that after a million jobs finish and are purged ``jobq compact`` leaves the
directory under 10 MB. Two queues are built, SMALL (1,000 jobs) and BIG (``--jobs``, 1,000,000 by
default, 100,000 with ``--quick``), and measured alike:

1. Enqueue with ``Queue.enqueue_many`` in chunks of 10,000 (durable), then the first open, which
   indexes every record (the catch-up), timed on its own: claims are timed only afterwards.
2. Claim cost: ``Store.claim(owner, 1)`` and ``Store.claim(owner, 100)`` (per job), median of many,
   rounds alternating between the queues so that a drift of the machine hits both alike; also the
   ``Store.settle`` that records the batch's 100 successes (per job). Each queue is topped up
   first, so it holds at least its size in queued jobs throughout.
3. Open: ``Queue(path)`` of a queue whose records are all indexed; then, on separate opens, the
   first claim and the first ``counts()``. Median of several opens.
4. Worker memory: a real ``jobq worker -c 1`` runs until it has finished WORKER_JOBS jobs (or
   WORKER_SECONDS passed); VmRSS and VmHWM of the supervisor and its child come from /proc.
5. Purge and compact: every job is finished in this process with the transition a worker records
   for a success (``Store.settle`` in batches), then ``jobq purge --status succeeded --older-than
   0s`` and ``jobq compact`` run as commands; the directory's size (every file, the SQLite WAL
   included) is reported after each step.
6. Status with every job finished and kept (before the purge in 5): ``jobq status`` (the
   command's function, run in this process on an open queue; also with the open), median of
   several, next to the count it made before the store kept counts (``SELECT status, COUNT(*)
   FROM jobs GROUP BY status``), timed on the same queue. Issue 14 asks for under 50 ms with
   1,000,000 finished jobs. ``--status-only`` builds only the big queue and measures only this.

Timings are wall-clock on a warm page cache. Files go under ``.bench-tmp/`` at the repository root
(the project's disk, never a tmpfs) and are removed at the end, also after Ctrl-C or SIGTERM.
``--json PATH`` also writes target 7's figures, with their baselines, to PATH for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # this checkout's jobq, also for the commands run below

from bench_scratch import scratch_dir  # noqa: E402 - scripts/ is on sys.path: run from there
from jobq import Queue  # noqa: E402
from jobq.cli import status_view  # noqa: E402
from jobq.execution import Outcome, change_for  # noqa: E402
from jobq.local.store import Claim  # noqa: E402

TASK = "operator:add"  # importable everywhere, costs nothing to run
SMALL = 1_000
FULL_JOBS = 1_000_000
QUICK_JOBS = 100_000
CHUNK = 10_000  # jobs per enqueue_many call
BATCH = 100  # jobs per batched claim
SINGLE_ROUNDS, SINGLE_PER_ROUND = 20, 20  # single claims: rounds x claims per queue per round
BATCH_ROUNDS = 30  # batched claims: one per queue per round
OPENS = 5
WORKER_JOBS = 2_000
WORKER_SECONDS = 60.0
FINISH_BATCH = 1_000
MAX_RATIO = 1.5
MAX_OPEN = 1.0
MAX_SIZE = 10 * 1024 * 1024
STATUS_RUNS = 7
MAX_STATUS = 0.050
OWNER = "bench-scale"


@dataclass
class Side:
    """One queue under test and every figure measured on it."""

    name: str
    jobs: int
    path: Path
    figures: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def median(self, key: str) -> float:
        return statistics.median(self.samples[key])


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


# -- building the queues -----------------------------------------------------------------------


SEGMENT_SIZE: dict[str, int] = {}  # Queue() options when creating a queue: --segment-size


def enqueue(path: Path, count: int) -> float:
    """Enqueue ``count`` jobs in chunks; return the seconds taken (the index is not touched)."""
    start = time.perf_counter()
    with Queue(path, **SEGMENT_SIZE) as q:
        for first in range(0, count, CHUNK):
            q.enqueue_many(TASK, [(i, i) for i in range(first, min(count, first + CHUNK))])
    return time.perf_counter() - start


def first_open(path: Path) -> float:
    """Seconds of the first open after enqueueing: Queue() indexes every new record."""
    start = time.perf_counter()
    Queue(path).close()
    return time.perf_counter() - start


def _count(path: Path, sql: str) -> int:
    """One COUNT query on the queue's state database, opened read-only."""
    conn = sqlite3.connect(f"file:{path / 'state.sqlite3'}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def queued(path: Path) -> int:
    """Jobs waiting in the ready index, counted read-only (an index range, not a table scan)."""
    return _count(path, "SELECT COUNT(*) FROM ready")


def succeeded(path: Path) -> int:
    return _count(path, "SELECT COUNT(*) FROM jobs WHERE status = 'succeeded'")


def top_up(side: Side, extra: int = 0) -> None:
    """Enqueue (and index) enough jobs that ``side.jobs + extra`` are queued."""
    missing = side.jobs + extra - queued(side.path)
    if missing > 0:
        enqueue(side.path, missing)
        Queue(side.path).close()


def build(side: Side) -> None:
    side.path.mkdir(parents=True)
    side.figures["enqueue"] = enqueue(side.path, side.jobs)
    progress(f"{side.name}: enqueued {side.jobs:,} in {side.figures['enqueue']:.1f} s")
    side.figures["catch_up"] = first_open(side.path)
    progress(f"{side.name}: first open indexed them in {side.figures['catch_up']:.1f} s")


# -- claims and opens --------------------------------------------------------------------------


def finish_claims(q: Queue, claims: list[Claim]) -> None:
    """Record each claim as a success, as a worker would."""
    change = change_for(Outcome("succeeded"), lambda attempt: 0.0)
    for first in range(0, len(claims), FINISH_BATCH):
        part = claims[first:first + FINISH_BATCH]
        q.store.settle([(c.job_id, c.token, change) for c in part], OWNER, 0)


def time_claims(q: Queue, side: Side, limit: int, count: int, key: str) -> list[Claim]:
    claims: list[Claim] = []
    for _ in range(count):
        start = time.perf_counter()
        got = q.store.claim(OWNER, limit)
        side.add(key, (time.perf_counter() - start) / limit)
        assert len(got) == limit, f"{side.name}: ran out of queued jobs"
        claims += got
    return claims


def measure_claims(sides: Sequence[Side]) -> None:
    """Single and batched claims, rounds alternating between the queues; claims end succeeded."""
    used = SINGLE_ROUNDS * SINGLE_PER_ROUND + BATCH_ROUNDS * BATCH
    for side in sides:
        top_up(side, used)
    queues = [Queue(side.path) for side in sides]
    try:
        for q in queues:  # warm up: the first claims of a process load its caches
            finish_claims(q, q.store.claim(OWNER, 5))
        for _ in range(SINGLE_ROUNDS):
            for q, side in zip(queues, sides):
                finish_claims(q, time_claims(q, side, 1, SINGLE_PER_ROUND, "claim1"))
        for _ in range(BATCH_ROUNDS):
            for q, side in zip(queues, sides):
                claims = time_claims(q, side, BATCH, 1, "claim_batch")
                start = time.perf_counter()
                finish_claims(q, claims)
                side.add("settle_batch", (time.perf_counter() - start) / BATCH)
    finally:
        for q in queues:
            q.close()


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure_opens(sides: Sequence[Side]) -> None:
    """Open alone, open then first claim, open then first counts(); alternating between queues."""
    for _ in range(OPENS):
        for side in sides:
            start = time.perf_counter()
            q = Queue(side.path)
            side.add("open", time.perf_counter() - start)
            try:
                start = time.perf_counter()
                claims = q.store.claim(OWNER, 1)
                side.add("first_claim", time.perf_counter() - start)
                finish_claims(q, claims)
            finally:
                q.close()
            with Queue(side.path) as counted:
                side.add("first_counts", timed(counted.counts))


# -- the worker --------------------------------------------------------------------------------


def jobq_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobq.cli", *args]


def command_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def proc_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes; (0, 0) once it is gone."""
    fields: dict[str, int] = {}
    with suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    with suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found += [int(c) for c in f.read().split()]
    return found


def run_worker(side: Side) -> None:
    """A real ``jobq worker -c 1`` until it finished WORKER_JOBS jobs; its memory from /proc."""
    top_up(side, WORKER_JOBS)
    done_before = succeeded(side.path)
    errors = open(side.path.parent / f"{side.name}-worker.err", "w+b")  # noqa: SIM115
    proc = subprocess.Popen(jobq_command("worker", "--dir", str(side.path), "-c", "1"),
                            env=command_env(), cwd=side.path.parent, stdout=subprocess.DEVNULL,
                            stderr=errors)
    start = time.perf_counter()
    done = 0
    peak_rss = {"supervisor": 0, "child": 0}
    last: dict[str, tuple[int, int]] = {}
    try:
        while done < WORKER_JOBS and time.perf_counter() - start < WORKER_SECONDS:
            if proc.poll() is not None:
                errors.seek(0)
                raise RuntimeError(f"worker exited: {errors.read().decode()[-2000:]}")
            time.sleep(0.2)
            last = {"supervisor": proc_memory(proc.pid)}
            kids = children_of(proc.pid)
            if kids:
                last["child"] = proc_memory(kids[0])
            for role, (rss, _) in last.items():
                peak_rss[role] = max(peak_rss[role], rss)
            done = succeeded(side.path) - done_before
        elapsed = time.perf_counter() - start
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        errors.close()
    side.figures["worker_jobs"] = done
    side.figures["worker_rate"] = done / elapsed
    for role in ("supervisor", "child"):
        rss, hwm = last.get(role, (0, 0))
        side.figures[f"{role}_rss"] = rss
        side.figures[f"{role}_hwm"] = hwm
    progress(f"{side.name}: worker finished {done:,} jobs in {elapsed:.1f} s; supervisor RSS"
             f" {mib(side.figures['supervisor_rss'])}, child {mib(side.figures['child_rss'])}")


# -- purge and compact -------------------------------------------------------------------------


def finish_everything(side: Side) -> float:
    """Claim and finish every job left, FINISH_BATCH per transaction; return the seconds taken."""
    change = change_for(Outcome("succeeded"), lambda attempt: 0.0)
    start = time.perf_counter()
    with Queue(side.path) as q:
        claims = q.store.claim(OWNER, FINISH_BATCH)
        while claims:
            _, claims = q.store.settle([(c.job_id, c.token, change) for c in claims], OWNER,
                                       FINISH_BATCH)
        left = {k: v for k, v in q.counts().items() if v and k != "succeeded"}
    assert not left, f"{side.name}: jobs left unfinished: {left}"
    return time.perf_counter() - start


def directory_sizes(path: Path) -> dict[str, int]:
    """Bytes of the log, the SQLite file, its WAL, and everything else (-shm, locks, json)."""
    sizes = {"log": 0, "sqlite": 0, "wal": 0, "other": 0}
    for root, _, files in os.walk(path):
        for name in files:
            size = os.lstat(os.path.join(root, name)).st_size
            kind = ("log" if name.endswith(".log") else "sqlite" if name == "state.sqlite3"
                    else "wal" if name == "state.sqlite3-wal" else "other")
            sizes[kind] += size
    sizes["total"] = sum(sizes.values())
    sizes["segments"] = sum(1 for n in os.listdir(path / "log") if n.endswith(".log"))
    return sizes


def run_command(*args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(jobq_command(*args), env=command_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"jobq {' '.join(args)} failed: {done.stderr[-2000:]}")
    progress(f"jobq {' '.join(args[:1])}: {done.stdout.strip()} ({elapsed:.1f} s)")
    return elapsed


def measure_status(side: Side) -> None:
    """``jobq status`` on the queue as it is (every job finished), and the old count of it."""
    args = argparse.Namespace(json=False, limit=20, exact=False)
    for _ in range(STATUS_RUNS):
        start = time.perf_counter()
        with Queue(side.path) as q:
            opened = time.perf_counter()
            status_view.status(q, args, io.StringIO())
            side.add("status", time.perf_counter() - opened)
            side.add("open_status", time.perf_counter() - start)
            start = time.perf_counter()
            q.store.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
            side.add("status_group_by", time.perf_counter() - start)
    progress(f"{side.name}: jobq status {ms(side.median('status'))} with"
             f" {side.jobs:,} finished jobs kept; COUNT GROUP BY {ms(side.median('status_group_by'))}")


def purge_and_compact(side: Side) -> None:
    side.figures["finish_all"] = finish_everything(side)
    side.sizes["finished"] = directory_sizes(side.path)
    progress(f"{side.name}: finished every job in {side.figures['finish_all']:.1f} s")
    measure_status(side)
    side.figures["purge"] = run_command("purge", "--dir", str(side.path), "--status",
                                        "succeeded", "--older-than", "0s")
    side.sizes["purged"] = directory_sizes(side.path)
    side.figures["compact"] = run_command("compact", "--dir", str(side.path))
    side.sizes["compacted"] = directory_sizes(side.path)


# -- reporting ---------------------------------------------------------------------------------


def mib(size: float) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KiB"
    return f"{size / 1024 / 1024:,.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.3f} ms"


def print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())


def ratio_row(label: str, small: float, big: float, show: Callable[[float], str]) -> tuple[str, ...]:
    return (label, show(small), show(big), f"{big / small:.2f}x" if small else "-")


def print_table(small: Side, big: Side) -> None:
    s, b = small, big
    rows: list[tuple[str, ...]] = [("figure", f"{s.jobs:,} queued [baseline]",
                                    f"{b.jobs:,} queued", "ratio")]
    rows.append(ratio_row("enqueue_many, 10k per call (s)", s.figures["enqueue"],
                          b.figures["enqueue"], lambda v: f"{v:.2f} s"))
    rows.append(ratio_row("first open = index catch-up (s)", s.figures["catch_up"],
                          b.figures["catch_up"], lambda v: f"{v:.2f} s"))
    rows.append(ratio_row("  catch-up per job", s.figures["catch_up"] / s.jobs,
                          b.figures["catch_up"] / b.jobs, lambda v: f"{v * 1e6:.1f} us"))
    for key, label in (("claim1", "claim(owner, 1), median"),
                       ("claim_batch", f"claim(owner, {BATCH}), per job, median"),
                       ("settle_batch", f"  settle {BATCH} successes, per job, median"),
                       ("open", "Queue(path) open, median"),
                       ("first_claim", "  first claim after open, median"),
                       ("first_counts", "  first counts() after open, median")):
        rows.append(ratio_row(label, s.median(key), b.median(key), ms))
    for role in ("supervisor", "child"):
        rows.append(ratio_row(f"worker {role} VmRSS", s.figures[f"{role}_rss"],
                              b.figures[f"{role}_rss"], mib))
        rows.append(ratio_row(f"worker {role} VmHWM", s.figures[f"{role}_hwm"],
                              b.figures[f"{role}_hwm"], mib))
    rows.append(ratio_row("worker jobs/s (-c 1)", s.figures["worker_rate"],
                          b.figures["worker_rate"], lambda v: f"{v:,.0f}"))
    rows.append(ratio_row("finish every job in-process (s)", s.figures["finish_all"],
                          b.figures["finish_all"], lambda v: f"{v:.1f} s"))
    for key, label in (("status", "jobq status, all finished, median"),
                       ("open_status", "  open + jobq status, median"),
                       ("status_group_by", "  COUNT GROUP BY (before job_counts)")):
        rows.append(ratio_row(label, s.median(key), b.median(key), ms))
    rows.append(ratio_row("jobq purge (s)", s.figures["purge"], b.figures["purge"],
                          lambda v: f"{v:.1f} s"))
    rows.append(ratio_row("jobq compact (s)", s.figures["compact"], b.figures["compact"],
                          lambda v: f"{v:.1f} s"))
    for stage in ("finished", "purged", "compacted"):
        for part in ("total", "log", "sqlite", "wal", "other"):
            label = f"dir after {stage}: {part}" if part == "total" else f"  {part}"
            rows.append(ratio_row(label, s.sizes[stage][part], b.sizes[stage][part], mib))
        rows.append(ratio_row("  log segments", s.sizes[stage]["segments"],
                              b.sizes[stage]["segments"], lambda v: f"{v:.0f}"))
    print_rows(rows)


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def print_verdicts(small: Side, big: Side) -> None:
    n = f"{big.jobs:,}"
    print()
    print(f"First open after enqueueing {n} jobs indexes them in {big.figures['catch_up']:.1f} s"
          f" ({big.figures['catch_up'] / big.jobs * 1e6:.1f} us per job).")
    for key, label in (("claim1", "claim of 1"), ("claim_batch", f"claim of {BATCH}, per job")):
        r = big.median(key) / small.median(key)
        print(f"{verdict(r <= MAX_RATIO)}: {label} with {n} queued costs {r:.2f}x its cost with"
              f" {small.jobs:,} (target <= {MAX_RATIO}x)")
    for role in ("supervisor", "child"):
        for mem in ("rss", "hwm"):
            r = big.figures[f"{role}_{mem}"] / small.figures[f"{role}_{mem}"]
            print(f"{verdict(r <= MAX_RATIO)}: worker {role} Vm{mem.upper()} with {n} queued is"
                  f" {r:.2f}x (target <= {MAX_RATIO}x)")
    opened = big.median("open")
    print(f"{verdict(opened <= MAX_OPEN)}: opening a queue of {n} indexed records takes"
          f" {opened * 1000:.1f} ms (target <= {MAX_OPEN:.0f} s); open + first claim"
          f" {(opened + big.median('first_claim')) * 1000:.1f} ms, open + first counts()"
          f" {(opened + big.median('first_counts')) * 1000:.1f} ms")
    print_status_verdict(big)
    size = big.sizes["compacted"]["total"]
    print(f"{verdict(size < MAX_SIZE)}: after {n} jobs finished, purge and compact the directory"
          f" holds {mib(size)} (target < {mib(MAX_SIZE)}); log {mib(big.sizes['compacted']['log'])}"
          f" in {big.sizes['compacted']['segments']} segment(s), SQLite"
          f" {mib(big.sizes['compacted']['sqlite'])} + WAL {mib(big.sizes['compacted']['wal'])}")
    if big.jobs != FULL_JOBS:
        print(f"(the target is stated for {FULL_JOBS:,} jobs; this run used {n})")


def print_status_verdict(big: Side) -> None:
    status, old = big.median("status"), big.median("status_group_by")
    print(f"{verdict(status < MAX_STATUS)}: jobq status with {big.jobs:,} finished jobs kept"
          f" answers in {ms(status)} (target < {MAX_STATUS * 1000:.0f} ms; open + status"
          f" {ms(big.median('open_status'))}); the COUNT GROUP BY it ran before job_counts takes"
          f" {ms(old)} on the same queue ({old / status:.0f}x)")


def status_only(big: Side) -> None:
    """Build the big queue, finish every job, time status: the rest of the benchmark skipped."""
    build(big)
    big.figures["finish_all"] = finish_everything(big)
    progress(f"{big.name}: finished every job in {big.figures['finish_all']:.1f} s")
    measure_status(big)
    rows: list[tuple[str, ...]] = [("figure", f"{big.jobs:,} finished jobs kept")]
    for key, label in (("status", "jobq status, median"),
                       ("open_status", "  open + jobq status, median"),
                       ("status_group_by", "  COUNT GROUP BY (before job_counts), median")):
        rows.append((label, ms(big.median(key))))
    print_rows(rows)
    print()
    print_status_verdict(big)


def write_json(path: Path, small: Side, big: Side) -> None:
    """Target 7's figures, each ratio against the SMALL queue's, for scripts/bench.py."""
    def pair(value: float, baseline: float, unit: str) -> dict[str, float | str]:
        return {"value": value, "baseline": baseline, "ratio": value / baseline, "unit": unit}
    figures: dict[str, object] = {"jobs": big.jobs, "small_jobs": small.jobs}
    for key in ("claim1", "claim_batch"):
        figures[key] = pair(big.median(key), small.median(key), "s")
    for role in ("supervisor", "child"):
        for mem in ("rss", "hwm"):
            key = f"{role}_{mem}"
            figures[key] = pair(big.figures[key], small.figures[key], "bytes")
    figures["open"] = {"value": big.median("open"), "unit": "s"}
    figures["compacted_size"] = {"value": big.sizes["compacted"]["total"], "unit": "bytes"}
    figures["catch_up"] = {"value": big.figures["catch_up"], "unit": "s"}
    path.write_text(json.dumps(figures, indent=2) + "\n")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_JOBS:,} jobs instead of {FULL_JOBS:,} (about 2 minutes)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="jobs in the big queue (overrides --quick)")
    parser.add_argument("--segment-size", type=float, metavar="MIB",
                        help="log segment size of both queues in MiB (default: jobq's, 64)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write target 7's figures and their baselines to PATH as JSON")
    parser.add_argument("--status-only", action="store_true",
                        help="only build the big queue, finish every job and time jobq status")
    args = parser.parse_args(argv)
    if args.segment_size is not None:
        SEGMENT_SIZE["segment_size"] = int(args.segment_size * 1024 * 1024)
    if args.jobs is None:
        args.jobs = QUICK_JOBS if args.quick else FULL_JOBS
    if args.jobs < SMALL:
        parser.error(f"--jobs must be at least {SMALL:,}")
    return args


def print_header(args: argparse.Namespace, root: Path) -> None:
    print(f"jobq scale benchmark ({'quick' if args.quick else 'full'}: {args.jobs:,} jobs against"
          f" {SMALL:,})")
    print(f"  nproc:      {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable)")
    print(f"  python:     {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print(f"  bench dir:  {root}")
    print(f"  segments:   {mib(args.segment_size * 1024 * 1024) if args.segment_size else 'default'}")
    print(f"  free disk:  {mib(shutil.disk_usage(root).free)}")
    print()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with scratch_dir("scale-") as root:
            small = Side("small", SMALL, root / "small")
            big = Side("big", args.jobs, root / "big")
            print_header(args, root)
            if args.status_only:
                status_only(big)
                return 0
            for side in (small, big):
                build(side)
            measure_claims((small, big))
            progress("claims measured")
            measure_opens((small, big))
            progress("opens measured")
            for side in (small, big):
                run_worker(side)
            for side in (small, big):
                purge_and_compact(side)
            print_table(small, big)
            print_verdicts(small, big)
            if args.json:
                write_json(args.json, small, big)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
