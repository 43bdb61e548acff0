#!/usr/bin/env python3
"""Enqueue throughput of jobq, printed as ratios against raw-I/O baselines measured in the same run.

Usage::

    python scripts/bench_enqueue.py [--quick] [--runs N] [--json PATH]

Every figure is the median of N runs (default 3). The runs are interleaved (round 1 measures every
figure, then round 2...), so that a drift of the disk's speed hits all figures alike. A ratio is a
figure's median over its baseline's median. Figures:

1. Baseline A, raw write+fdatasync: one process appends a 250-byte record to a file opened
   ``O_APPEND`` and calls ``fdatasync``, once per record.
2. ``Queue.enqueue`` one job at a time, durable (one fdatasync per job), against A.
3. ``Queue.enqueue`` one job at a time with ``fsync=False``, which is NOT durable, against A.
4. Baseline B, raw pickle+append: M records, each a pickled tuple (uuid4 id, task, args, kwargs,
   time) behind a length + CRC-32 header, joined into one buffer: one write, one fdatasync.
5. ``Queue.enqueue_many`` of M jobs (one call: one write, one fdatasync), against B.
6. Four producer processes started together behind a barrier, timed from the earliest start after
   the barrier to the last finish: four raw write+fdatasync loops on one file (each with its own
   descriptor), then four jobq producers enqueueing one by one into one queue. One raw process
   alone, run the same way, gives the context for the raw aggregate.
7. The design question "each producer fdatasyncs for itself (flushes may run in parallel)
   vs a shared user-space group commit", with four processes that append under an exclusive
   ``flock`` held only for the write. Either each then calls fdatasync itself, or it waits until a
   shared "synced up to" offset covers its record; a process that finds it uncovered takes a
   second "leader" flock, re-checks, reads the file size, fdatasyncs, and publishes that size.

Linux only (fdatasync, /proc/mounts). Files are written under ``.bench-tmp/`` at the repository root,
so on the project's disk (never a tmpfs), and removed at the end, also after Ctrl-C or SIGTERM.
``--json PATH`` also writes the target figures (2, 5 and 6) with their baselines to PATH, for
scripts/bench.py.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import mmap
import multiprocessing as mp
import os
import pickle
import platform
import queue
import statistics
import struct
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from multiprocessing.queues import Queue as ProcessQueue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from bench_machine import filesystem_of  # scripts/ is on sys.path: this file runs from there
from bench_scratch import scratch_dir
from jobq import Queue

REPO = Path(__file__).resolve().parent.parent
TASK = "operator:add"
RECORD = b"r" * 249 + b"\n"  # baseline A's record: 250 bytes
PRODUCERS = 4
START_TIMEOUT = 120.0  # seconds for every producer process to be ready
RUN_TIMEOUT = 600.0  # seconds for every producer process to finish
_FRAME_HEADER = struct.Struct("<II")  # baseline B: body length, CRC-32 of the body

# A producer gets a directory (shared by all processes of one measurement) and a record count; it
# sets up outside the timing and yields the timed work, which returns how many fdatasyncs it made.
Run = Callable[[], int]
Producer = Callable[[Path, int], AbstractContextManager[Run]]


@dataclass(frozen=True)
class Sizes:
    """How many records each workload writes."""

    durable: int  # one-by-one durable loops in one process (figures 1, 2)
    not_durable: int  # jobq with fsync=False (figure 3)
    batch: int  # M: baseline B and enqueue_many (figures 4, 5)
    per_producer: int  # each process of the multi-process figures (6, 7)


FULL = Sizes(durable=10_000, not_durable=50_000, batch=100_000, per_producer=5_000)
QUICK = Sizes(durable=1_000, not_durable=10_000, batch=20_000, per_producer=500)


@dataclass(frozen=True)
class Stats:
    """What one measurement gives: records per second and fdatasync calls per record."""

    rate: float
    syncs_per_record: float


@dataclass(frozen=True)
class Figure:
    """One row of the table: how to measure it in a fresh directory, and what it is compared with."""

    section: int
    key: str
    label: str
    measure: Callable[[Path], Stats]
    baseline: str | None = None


# -- producers: raw baselines ------------------------------------------------------------------


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_fsync_loop(fd: int, count: int) -> int:
    for _ in range(count):
        os.write(fd, RECORD)
        os.fdatasync(fd)
    return count


@contextmanager
def raw_producer(directory: Path, count: int) -> Iterator[Run]:
    """Baseline A: write one record, fdatasync, repeat."""
    fd = _open_append(directory / "raw.log")
    try:
        yield lambda: _write_fsync_loop(fd, count)
    finally:
        os.close(fd)


def _pickle_append(fd: int, count: int) -> int:
    parts: list[bytes] = []
    for i in range(count):
        body = pickle.dumps((uuid.uuid4().hex, TASK, (i, i), {}, time.time()), protocol=5)
        parts += (_FRAME_HEADER.pack(len(body), zlib.crc32(body)), body)
    _write_all(fd, b"".join(parts))
    os.fdatasync(fd)
    return 1


@contextmanager
def pickle_batch_producer(directory: Path, count: int) -> Iterator[Run]:
    """Baseline B: pickle and frame ``count`` records, then one write and one fdatasync."""
    fd = _open_append(directory / "batch.log")
    try:
        yield lambda: _pickle_append(fd, count)
    finally:
        os.close(fd)


# -- producers: jobq ---------------------------------------------------------------------------


def _enqueue_loop(q: Queue, count: int) -> int:
    for i in range(count):
        q.enqueue(TASK, i, i)
    return count if q.config.fsync else 0  # Log.append makes one fdatasync per call, if any


@contextmanager
def jobq_producer(directory: Path, count: int) -> Iterator[Run]:
    """Durable ``Queue.enqueue``, one job at a time."""
    with Queue(directory / "queue") as q:
        yield lambda: _enqueue_loop(q, count)


@contextmanager
def jobq_not_durable_producer(directory: Path, count: int) -> Iterator[Run]:
    """``Queue(fsync=False).enqueue``, one job at a time."""
    with Queue(directory / "queue", fsync=False) as q:
        yield lambda: _enqueue_loop(q, count)


def _enqueue_batch(q: Queue, args_list: list[tuple[int, int]]) -> int:
    q.enqueue_many(TASK, args_list)
    return 1


@contextmanager
def jobq_batch_producer(directory: Path, count: int) -> Iterator[Run]:
    """One ``Queue.enqueue_many`` call for ``count`` jobs."""
    args_list = [(i, i) for i in range(count)]
    with Queue(directory / "queue") as q:
        yield lambda: _enqueue_batch(q, args_list)


# -- producers: the group-commit prototype -----------------------------------------------------


class SharedLog:
    """An append-only file shared by processes: records are written under an exclusive flock.

    Durability comes either from :meth:`sync_self` (an fdatasync of one's own) or from
    :meth:`wait_synced`, the group commit: the offset up to which the file is known to be on
    stable storage lives in a shared 8-byte counter (an mmap'd file), and only a process that finds
    its record beyond it syncs, as the "leader", for every record written so far. The counter is
    an aligned 8-byte word, read and written whole on x86-64 and arm64, and only written under the
    leader lock, where it only grows.
    """

    def __init__(self, directory: Path) -> None:
        self._fd = _open_append(directory / "shared.log")
        self._write_lock = os.open(directory / "write.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._leader_lock = os.open(directory / "leader.lock", os.O_RDWR | os.O_CREAT, 0o600)
        counter_fd = os.open(directory / "synced", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(counter_fd, 8)  # a no-op once the file has its 8 bytes
            self._map = mmap.mmap(counter_fd, 8)
        finally:
            os.close(counter_fd)
        self._synced = ctypes.c_int64.from_buffer(self._map)
        self.syncs = 0

    def append(self, data: bytes) -> int:
        """Write ``data`` as one record; return the offset at which it ends."""
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            os.write(self._fd, data)
            return os.lseek(self._fd, 0, os.SEEK_CUR)  # O_APPEND left it at the record's end
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def sync_self(self) -> None:
        os.fdatasync(self._fd)
        self.syncs += 1

    def wait_synced(self, end: int) -> None:
        """Return once the bytes up to ``end`` are on stable storage, syncing for all if needed."""
        if self._synced.value >= end:
            return
        fcntl.flock(self._leader_lock, fcntl.LOCK_EX)
        try:
            if self._synced.value < end:  # the previous leader's sync did not cover it
                size = os.fstat(self._fd).st_size  # everything written so far, ours included
                os.fdatasync(self._fd)
                self.syncs += 1
                self._synced.value = size
        finally:
            fcntl.flock(self._leader_lock, fcntl.LOCK_UN)

    def close(self) -> None:
        del self._synced  # the mmap cannot close while a ctypes view of it exists
        self._map.close()
        for fd in (self._fd, self._write_lock, self._leader_lock):
            os.close(fd)


def _own_sync_loop(log: SharedLog, count: int) -> int:
    for _ in range(count):
        log.append(RECORD)
        log.sync_self()
    return log.syncs


def _group_commit_loop(log: SharedLog, count: int) -> int:
    for _ in range(count):
        log.wait_synced(log.append(RECORD))
    return log.syncs


@contextmanager
def own_sync_producer(directory: Path, count: int) -> Iterator[Run]:
    """Write under the flock, then fdatasync for oneself (as jobq's Log.append does, though it
    overwrites zero fill instead of appending)."""
    log = SharedLog(directory)
    try:
        yield lambda: _own_sync_loop(log, count)
    finally:
        log.close()


@contextmanager
def group_commit_producer(directory: Path, count: int) -> Iterator[Run]:
    """Write under the flock, then wait for (or lead) a shared fdatasync."""
    log = SharedLog(directory)
    try:
        yield lambda: _group_commit_loop(log, count)
    finally:
        log.close()


# -- measuring ---------------------------------------------------------------------------------


def in_process(producer: Producer, count: int) -> Callable[[Path], Stats]:
    """Measure ``producer`` in this process."""
    def measure(directory: Path) -> Stats:
        with producer(directory, count) as run:
            start = time.perf_counter()
            syncs = run()
            elapsed = time.perf_counter() - start
        return Stats(count / elapsed, syncs / count)
    return measure


def in_processes(producer: Producer, processes: int, count: int,
                 prepare: Callable[[Path], None] | None = None) -> Callable[[Path], Stats]:
    """Measure ``processes`` spawned copies of ``producer`` running at once in one directory."""
    def measure(directory: Path) -> Stats:
        if prepare is not None:
            prepare(directory)
        elapsed, syncs = run_concurrently(producer, directory, processes, count)
        total = processes * count
        return Stats(total / elapsed, syncs / total)
    return measure


def _create_queue(directory: Path) -> None:
    Queue(directory / "queue").close()


def _producer_process(producer: Producer, directory: Path, count: int,
                      barrier: Barrier, results: ProcessQueue) -> None:
    """Body of one producer process: set up, wait for the others, run, report (start, end, syncs)."""
    try:
        with producer(directory, count) as run:
            barrier.wait(START_TIMEOUT)
            start = time.monotonic()  # CLOCK_MONOTONIC: one clock for all processes
            syncs = run()
            end = time.monotonic()
        results.put((start, end, syncs, None))
    except BaseException as exc:  # report it (even Ctrl-C): the parent is waiting for a result
        barrier.abort()
        results.put((0.0, 0.0, 0, f"{type(exc).__name__}: {exc}"))


def run_concurrently(producer: Producer, directory: Path, processes: int,
                     count: int) -> tuple[float, int]:
    """Run the producers together; return (first start to last end in seconds, fdatasyncs)."""
    name = getattr(producer, "__name__", repr(producer))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [ctx.Process(target=_producer_process,
                           args=(producer, directory, count, barrier, results), daemon=True)
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    try:
        outcomes = [results.get(timeout=START_TIMEOUT + RUN_TIMEOUT) for _ in workers]
        for worker in workers:
            worker.join()
    except queue.Empty:
        raise RuntimeError(f"{name}: a producer process did not report") from None
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()
    errors = sorted({error for *_, error in outcomes if error})
    if errors:
        raise RuntimeError(f"{name} failed: {'; '.join(errors)}")
    starts, ends, syncs, _ = zip(*outcomes)
    return max(ends) - min(starts), sum(syncs)


def figures(sizes: Sizes) -> list[Figure]:
    n, p = sizes, PRODUCERS
    return [
        Figure(1, "A", "raw write+fdatasync, 1 process [A]", in_process(raw_producer, n.durable)),
        Figure(2, "jobq", "jobq enqueue, durable", in_process(jobq_producer, n.durable), "A"),
        Figure(3, "jobq-nosync", "jobq enqueue, fsync=False (NOT durable)",
               in_process(jobq_not_durable_producer, n.not_durable), "A"),
        Figure(4, "B", f"raw pickle+append of {n.batch:,}, 1 fdatasync [B]",
               in_process(pickle_batch_producer, n.batch)),
        Figure(5, "jobq-many", f"jobq enqueue_many of {n.batch:,}",
               in_process(jobq_batch_producer, n.batch), "B"),
        Figure(6, "R1", "raw write+fdatasync, 1 process, spawned [R1]",
               in_processes(raw_producer, 1, n.per_producer)),
        Figure(6, "R4", f"raw write+fdatasync, {p} processes [R4]",
               in_processes(raw_producer, p, n.per_producer), "R1"),
        Figure(6, "jobq4", f"jobq enqueue, durable, {p} processes",
               in_processes(jobq_producer, p, n.per_producer, _create_queue), "R4"),
        Figure(7, "S4", f"flock write + own fdatasync, {p} processes [S4]",
               in_processes(own_sync_producer, p, n.per_producer), "R4"),
        Figure(7, "G4", f"flock write + group commit, {p} processes",
               in_processes(group_commit_producer, p, n.per_producer), "S4"),
    ]


def measure_all(figs: Sequence[Figure], runs: int, root: Path) -> dict[str, list[Stats]]:
    """Measure every figure ``runs`` times, round by round, each time in a fresh directory."""
    results: dict[str, list[Stats]] = {f.key: [] for f in figs}
    for round_no in range(1, runs + 1):
        for fig in figs:
            directory = Path(tempfile.mkdtemp(dir=root, prefix=f"{round_no}-{fig.key}-"))
            stats = fig.measure(directory)
            results[fig.key].append(stats)
            print(f"  run {round_no}/{runs}  {fig.label:<46} {stats.rate:>12,.0f}/s",
                  file=sys.stderr, flush=True)
    return results


# -- reporting ---------------------------------------------------------------------------------


def print_header(args: argparse.Namespace, sizes: Sizes, root: Path) -> None:
    usable = len(os.sched_getaffinity(0))
    print(f"jobq enqueue benchmark ({'quick' if args.quick else 'full'};"
          f" each figure is the median of {args.runs} run{'s' if args.runs != 1 else ''})")
    print(f"  nproc:       {os.cpu_count()} CPUs ({usable} usable)")
    print(f"  python:      {platform.python_implementation()} {platform.python_version()}"
          f" on Linux {platform.release()}")
    print(f"  bench dir:   {root}")
    print(f"  filesystem:  {filesystem_of(root)}")
    print(f"  workloads:   {sizes.durable:,} records one by one durable,"
          f" {sizes.not_durable:,} not durable, M = {sizes.batch:,},"
          f" {sizes.per_producer:,} per producer process")
    print()


def _records_per_sync(syncs_per_record: float) -> str:
    if not syncs_per_record:
        return "-"
    records = 1 / syncs_per_record
    return f"{records:,.0f}" if records >= 100 else f"{records:.2f}"


def print_table(figs: Sequence[Figure], results: dict[str, list[Stats]]) -> dict[str, float]:
    """Print one row per figure; return the median rate of each figure."""
    medians = {key: statistics.median(s.rate for s in stats) for key, stats in results.items()}
    rows = [("#", "figure", "per second", "runs: min - max", "baseline", "ratio",
             "records/fdatasync")]
    for fig in figs:
        rates = [s.rate for s in results[fig.key]]
        syncs = statistics.median(s.syncs_per_record for s in results[fig.key])
        ratio = f"{medians[fig.key] / medians[fig.baseline]:.2f}x" if fig.baseline else "-"
        rows.append((str(fig.section), fig.label, f"{medians[fig.key]:,.0f}",
                     f"{min(rates):,.0f} - {max(rates):,.0f}", fig.baseline or "-", ratio,
                     _records_per_sync(syncs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {2, 3, 5, 6}
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    return medians


def print_verdicts(medians: dict[str, float]) -> None:
    jobq_share = medians["jobq4"] / medians["R4"]
    print()
    print(f"{PRODUCERS} jobq producers reach {jobq_share:.0%} of the {PRODUCERS}-process raw"
          f" aggregate{' (below 80%)' if jobq_share < 0.8 else ''};"
          f" {PRODUCERS} raw processes reach {medians['R4'] / medians['R1']:.2f}x one.")
    group, own = medians["G4"], medians["S4"]
    faster, ratio = ("group commit", group / own) if group > own else ("own fdatasync", own / group)
    print(f"Design question, {PRODUCERS} processes: own fdatasync {own:,.0f}/s, group commit"
          f" {group:,.0f}/s: {faster} is faster, by {ratio:.2f}x.")


def write_json(path: Path, medians: dict[str, float]) -> None:
    """The issue's targets 1-3, each a median rate beside its baseline's, for scripts/bench.py."""
    def pair(key: str, baseline: str) -> dict[str, float | str]:
        value, base = medians[key], medians[baseline]
        return {"value": value, "baseline": base, "ratio": value / base, "unit": "jobs/s"}
    figures = {"enqueue": pair("jobq", "A"), "enqueue_4": pair("jobq4", "R4"),
               "enqueue_many": pair("jobq-many", "B")}
    path.write_text(json.dumps(figures, indent=2) + "\n")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small workloads: the whole run takes well under a minute")
    parser.add_argument("--runs", type=int, default=3, metavar="N",
                        help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the target figures and their baselines to PATH as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    try:
        with scratch_dir("run-") as root:
            print_header(args, sizes, root)
            figs = figures(sizes)
            results = measure_all(figs, args.runs, root)
            medians = print_table(figs, results)
            print_verdicts(medians)
            if args.json:
                write_json(args.json, medians)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
