#!/usr/bin/env python3
"""jobq's PostgreSQL engine against the raw server: one run, one database, ratios printed.

    python scripts/bench_pg_engine.py [--jobs N] [--batch K] [--runs R] [--kept M] [--dsn DSN]
                                      [--enqueue-only]

On the server at ``--dsn`` (default ``JOBQ_BENCH_PG_DSN``, else
postgresql://postgres@127.0.0.1:5432/postgres), in a database made for the run and dropped at
its end, interleaved R times (medians printed):

1. drain: N no-op jobs queued first, then 2 processes each running the worker's loop on
   ``PgEngine.settle`` (record the last batch, claim the next K, one transaction), loading each
   job's verified payload, unpickling it and calling the no-op; timed from starting the
   processes to the last completion recorded (the server's clock), lost and twice-claimed jobs
   counted;
2. the bare claim loop of scripts/pg_baselines.py at the same K and N (bench_pg.py's figure);
3. enqueue: ``PgEngine.append`` of one job per call against one INSERT + COMMIT per row, and
   of a batch of N in one call against COPY of N rows (the frames made beforehand, as the raw
   rows are), and ``Queue.enqueue_many`` of N jobs (the whole producer's call: pickling, framing,
   storing) against the same COPY;
4. with ``--kept M``: the drain of 1. again, on a queue that keeps M finished jobs.

Each jobq measurement starts from empty jobq tables (``pg_server.empty_jobq``), as the raw
baselines' start from a table made anew. Jobs carry about 300 bytes of payload, as the raw rows
do. ``--enqueue-only`` measures 3. alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import pg_baselines  # noqa: E402
import pg_server  # noqa: E402
from bench_scratch import scratch_dir  # noqa: E402
from pg_baselines import claim_drain  # noqa: E402
from pg_server import DEFAULT_DSN, bench_database, server_info  # noqa: E402

from jobq import Queue, job_record, record, transitions  # noqa: E402
from jobq.pickling import PickleRules  # noqa: E402
from jobq.postgres import PgEngine, open_engine  # noqa: E402

TASK = "peers.tasks:noop"
PAD = b"x" * 220


def open_queue(url: str) -> PgEngine:
    return open_engine(url, secret_key=None, rules=PickleRules.build(), max_record_size=1 << 20)


def make_frames(prefix: str, n: int) -> list[bytes]:
    now = time.time()
    return [record.encode(record.KIND_JOB, job_record.encode_fields(
        f"{prefix}{i:07d}", TASK, (PAD,), {}, 0, 3, None, now, now)) for i in range(n)]


def drain(url: str, batch: int, worker: str) -> int:
    """The worker's loop on one process, until a claim returns nothing; jobs run."""
    from peers.tasks import noop

    engine = open_queue(url)
    rules = PickleRules.build()
    tasks = {TASK: noop}
    finished: list[tuple[str, int, transitions.Any]] = []
    ran = 0
    while True:
        _, claims = engine.settle(finished, worker, batch)
        finished = []
        if not claims:
            return ran
        for claim in claims:
            payload = job_record.load_payload(engine.payload_body(claim.job_id, claim.ref),
                                              rules, claim.job_id)
            tasks[payload.task](*payload.args[:0])
            finished.append((claim.job_id, claim.token, _succeeded))
        ran += len(claims)


def _succeeded(state, now, max_attempts):  # type: ignore[no-untyped-def]
    return transitions.succeeded(state, None, now)


def keep_finished(engine: PgEngine, queue: str, kept: int) -> None:
    """Give ``queue`` ``kept`` finished jobs (rows of jobq_done, made by the server)."""
    with engine._db.transaction("fill jobq_done") as conn:  # noqa: SLF001
        conn.execute(
            "INSERT INTO jobq_done (queue, job_id, seq, status, priority, run_at, attempts,"
            " max_attempts, token, progress, task, enqueued_at, updated_at, blob)"
            " SELECT %s, 'kept' || i, -i, 'succeeded', 0, 0, 1, 3, 1, 1, %s, 0, 0, NULL"
            " FROM generate_series(1, %s) AS i", (queue, TASK, kept))
    with engine._db.errors("analyze"):  # noqa: SLF001
        engine._db.conn.execute("VACUUM ANALYZE jobq_done")  # noqa: SLF001


def engine_drain(dsn: str, n: int, batch: int, root: Path, kept: int = 0) -> tuple[float, str]:
    pg_server.empty_jobq(dsn)  # as the raw baselines' table, made anew
    queue = f"drain{time.monotonic_ns()}"
    engine = open_queue(pg_server.url_of(dsn, queue))
    if kept:
        keep_finished(engine, queue, kept)
    frames = make_frames("d", n)
    for start in range(0, n, 5000):
        engine.append(frames[start:start + 5000])
    started = time.time()
    pg_server.wait([pg_server.spawn([sys.executable, __file__, "drain", "--url",
                                     pg_server.url_of(dsn, queue), "--batch", str(batch),
                                     "--worker", f"w{i}"], root) for i in range(2)],
                   "engine drain")
    with engine._db.errors("read the outcome"):  # noqa: SLF001 - the benchmark's own look
        first, last, done, twice = engine._db.conn.execute(  # noqa: SLF001
            "SELECT min(updated_at), max(updated_at), count(*) FILTER (WHERE status ="
            " 'succeeded'), count(*) FILTER (WHERE token > 1) FROM jobq_done WHERE queue = %s"
            " AND seq > 0",
            (queue,)).fetchone()
    engine.close()
    if done != n or twice:
        raise RuntimeError(f"engine drain: {n - done} lost, {twice} claimed twice")
    return (n / (last - started),
            f"N={n:,}, 0 lost, 0 claimed twice; {n / max(last - first, 1e-6):,.0f}/s from the"
            " first completion")


def engine_append_one(dsn: str, n: int) -> float:
    pg_server.empty_jobq(dsn)  # as the raw baselines' table, made anew
    engine = open_queue(pg_server.url_of(dsn, f"one{time.monotonic_ns()}"))
    frames = make_frames("o", n)
    start = time.perf_counter()
    for f in frames:
        engine.append([f])
    rate = n / (time.perf_counter() - start)
    engine.close()
    return rate


def engine_append_many(dsn: str, n: int) -> float:
    pg_server.empty_jobq(dsn)  # as the raw baselines' table, made anew
    engine = open_queue(pg_server.url_of(dsn, f"many{time.monotonic_ns()}"))
    frames = make_frames("m", n)
    engine.now()  # connected before the clock starts, as the raw COPY is
    start = time.perf_counter()
    engine.append(frames)
    rate = n / (time.perf_counter() - start)
    engine.close()
    return rate


def queue_enqueue_many(dsn: str, n: int) -> float:
    """``Queue.enqueue_many`` of n jobs whose arguments pickle to about what make_frames holds."""
    pg_server.empty_jobq(dsn)  # as the raw baselines' table, made anew
    args_list = [(PAD, b"")] * n
    with Queue(pg_server.url_of(dsn, f"qmany{time.monotonic_ns()}")) as q:
        q.engine.now()  # connected before the clock starts, as the raw COPY is
        start = time.perf_counter()
        q.enqueue_many("operator:add", args_list)
        return n / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", choices=["bench", "drain"], default="bench")
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN))
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inserts", type=int, default=5_000)
    parser.add_argument("--kept", type=int, default=0, help="also drain a queue that keeps"
                        " this many finished jobs (issue 16: 1,000,000)")
    parser.add_argument("--enqueue-only", action="store_true", help="measure enqueue alone"
                        " (no drains)")
    parser.add_argument("--url")
    parser.add_argument("--worker")
    args = parser.parse_args(argv)
    if args.command == "drain":
        drain(args.url, args.batch, args.worker)
        return 0
    rates: dict[str, list[float]] = {}
    notes: dict[str, str] = {}
    pg_server.compile_sources()
    with scratch_dir("pg-engine-") as root, bench_database(args.dsn) as dsn:
        version, settings = server_info(dsn)
        print(f"jobq PostgreSQL engine vs the raw server (median of {args.runs} interleaved runs)")
        print(f"  server:   {version}")
        print(f"  settings: {', '.join(f'{k}={v}' for k, v in settings.items())}")
        print(f"  machine:  {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable)")
        for run in range(args.runs):
            print(f"round {run + 1} of {args.runs}...", file=sys.stderr)
            drains = not args.enqueue_only
            measures: list[tuple[str, Callable[[], tuple[float, str]]]] = [
                *((("bare", lambda: claim_drain(dsn, args.batch, args.jobs, root)),
                   ("engine", lambda: engine_drain(dsn, args.jobs, args.batch, root)))
                  if drains else ()),
                ("insert", lambda: (pg_baselines.insert_loop(dsn, args.inserts), "")),
                ("append1", lambda: (engine_append_one(dsn, args.inserts), "")),
                ("copy", lambda: (pg_baselines.copy_rows(dsn, args.jobs), "")),
                ("appendN", lambda: (engine_append_many(dsn, args.jobs), "")),
                ("queueN", lambda: (queue_enqueue_many(dsn, args.jobs), "")),
                *((("kept", lambda: engine_drain(dsn, args.jobs, args.batch, root, args.kept)),)
                  if args.kept and drains else ())]
            for key, measure in measures:
                rate, note = measure()
                rates.setdefault(key, []).append(rate)
                notes[key] = note or notes.get(key, "")
    med = {k: statistics.median(v) for k, v in rates.items()}
    rows = [(f"bare claim loop, 2 processes, K={args.batch}", "bare"),
            (f"PgEngine.settle drain, 2 processes, K={args.batch}", "engine"),
            ("INSERT + COMMIT per row, 1 connection", "insert"),
            ("PgEngine.append, 1 job per call", "append1"),
            (f"COPY of {args.jobs:,} rows", "copy"),
            (f"PgEngine.append of {args.jobs:,} jobs in one call", "appendN"),
            (f"Queue.enqueue_many of {args.jobs:,} jobs", "queueN"),
            *(((f"same drain, {args.kept:,} finished jobs kept", "kept"),) if args.kept else ())]
    rows = [(label, key) for label, key in rows if key in rates]
    for label, key in rows:
        spread = rates[key]
        print(f"  {label:<46} {med[key]:>9,.0f}/s (runs {min(spread):,.0f}-{max(spread):,.0f})"
              f"  {notes[key]}")
    print("ratios (same run, same server):")
    if "engine" in med:
        print(f"  engine drain / bare claim loop:       {med['engine'] / med['bare']:.2f}x"
              " (issue 16 target >= 0.4x)")
    print(f"  append 1 by 1 / INSERT + COMMIT loop: {med['append1'] / med['insert']:.2f}x"
          " (target >= 0.8x)")
    print(f"  append of a batch / COPY:             {med['appendN'] / med['copy']:.2f}x"
          " (target >= 0.5x)")
    print(f"  Queue.enqueue_many of a batch / COPY: {med['queueN'] / med['copy']:.2f}x"
          " (the producer's whole call)")
    if "kept" in med:
        print(f"  drain, none kept / {args.kept:,} kept:      {med['engine'] / med['kept']:.2f}x"
              " (target <= 1.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
