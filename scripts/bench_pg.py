#!/usr/bin/env python3
"""jobq on PostgreSQL against the raw server and its peers: one server, one run, ratios printed.

    python scripts/bench_pg.py [--quick] [--runs N] [--kept M] [--dsn DSN] [--no-peers]
                               [--no-sigkill]

The issue's figures (N=20,000, 1,000,000 finished jobs kept, medians of 3; about 15 minutes):
``python scripts/bench_pg.py --runs 3``. ``--quick``: smaller sizes, one run, a minute or two.

What is measured, on the server at ``--dsn`` (default ``JOBQ_BENCH_PG_DSN``, else
postgresql://postgres@127.0.0.1:5432/postgres), in a database made for this run
(``jobq_bench_<pid>``) and dropped at its end:

1. raw baselines (scripts/pg_baselines.py, this interpreter's psycopg): one INSERT + COMMIT per
   row on one connection; COPY of N rows in one transaction; the bare batched claim loop with 2
   processes at K = 1, 10, 50, 200 (record the previous batch finished, claim the next K with
   ``FOR UPDATE SKIP LOCKED`` in a CTE, commit durably, unpickle, call a no-op), timed from
   starting the processes to the last completion recorded, with lost and twice-claimed jobs
   counted;
2. the peers pgqueuer and procrastinate (scripts/peers/pg_driver.py), installed at pinned versions
   into a virtual environment of their own (``.bench-tmp/pg-peers-venv``, made once, never the
   project's): a drain of N no-op jobs with 2 worker processes, from starting them to the last
   completion each system recorded, with each one's durability read from its own session; and
   for pgqueuer the time from SIGKILL of the worker running a job to another worker starting it;
3. jobq (scripts/pg_jobq.py, this checkout's jobq): a drain of the same N no-op jobs by its real
   worker, ``jobq worker --burst`` processes (2 workers of 1 child each, the peers' layout, and 1
   worker of 2 children), with lost and twice-run jobs counted; ``Queue.enqueue`` one job per call
   against the INSERT loop and ``Queue.enqueue_many`` against COPY; a SIGKILLed worker's job
   running again on another worker (median of several trials); the claim cost with M finished
   jobs kept against none (scripts/bench_pg_engine.py's settle-level drain, K=50); and the
   durability settings of its own session. Each of jobq's measurements starts from empty jobq
   tables, as each raw baseline's starts from a table made anew and each peer's from its tables
   TRUNCATEd. The targets of issue 16 are printed against the figures of the same run, PASS or
   MISS.

The server's version and durability settings are printed first: every figure is only as durable
as they say. Figures are medians of ``--runs`` interleaved runs (the machine is shared, so
absolute figures are rough; read the ratios, which compare figures of one run on one server).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bench_pg_engine
import bench_venv
import pg_baselines
import pg_jobq
import pg_server
from bench_scratch import BENCH_ROOT, scratch_dir
from pg_server import DEFAULT_DSN, bench_database, server_info

VENV = BENCH_ROOT / "pg-peers-venv"
# The versions measured (the field notes' figures are for these); the venv is rebuilt on change.
PINS = {"pgqueuer": "1.6.0", "procrastinate": "3.10.0", "psycopg[binary]": "3.3.9"}


@dataclass(frozen=True)
class Sizes:
    inserts: int  # rows in the INSERT+commit loop, and jobs enqueued one by one
    copy: int  # rows in one COPY, and jobs in one enqueue_many
    claim: int  # N for the claim loop at K >= 10
    claim_k1: int  # N for the claim loop at K = 1 (a commit per job: slow)
    drain: int  # N for pgqueuer's and jobq's drains
    drain_slow: int  # N for procrastinate's drain (a few hundred jobs a second)
    kept: int  # finished jobs kept for the claim cost
    kills: int  # jobq's SIGKILL trials (pgqueuer's: one, it takes 30 s)


QUICK = Sizes(inserts=2_000, copy=20_000, claim=20_000, claim_k1=2_000, drain=5_000,
              drain_slow=1_000, kept=100_000, kills=3)
FULL = Sizes(inserts=20_000, copy=100_000, claim=20_000, claim_k1=20_000, drain=20_000,
             drain_slow=20_000, kept=1_000_000, kills=7)
BATCHES = (1, 10, 50, 200)


@dataclass
class Results:
    rates: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # per figure: N, lost, durability...
    durability: dict[str, str] = field(default_factory=dict)  # per system, from its session

    def add(self, key: str, rate: float, note: str = "") -> None:
        self.rates.setdefault(key, []).append(rate)
        if note:
            self.notes[key] = note

    def median(self, key: str) -> float | None:
        rates = self.rates.get(key)
        return statistics.median(rates) if rates else None


# -- measuring ----------------------------------------------------------------------------------


def peer(python: Path, system: str, workload: str, dsn: str, n: int,
         root: Path) -> dict[str, object]:
    cmd = [str(python), "-m", "peers.pg_driver", system, workload, "--dsn", dsn, "--dir",
           str(root), "--jobs", str(n)]
    out = pg_server.wait([pg_server.spawn(cmd, root)], f"{system} {workload}")[0]
    return json.loads(out.strip().splitlines()[-1])


def measure_peer(python: Path, system: str, dsn: str, n: int, root: Path,
                 results: Results) -> None:
    answer = peer(python, system, "drain", dsn, n, root)
    rate = float(answer["rate"])  # type: ignore[arg-type]
    results.add(system, rate, f"N={n:,}; {answer['short']}")
    results.durability[system] = str(answer["durability"])


def measure_round(dsn: str, sizes: Sizes, root: Path, peers_python: Path | None,
                  results: Results) -> None:
    """Every figure once, jobq's next to the baseline or peer it is compared with."""
    results.add("insert", pg_baselines.insert_loop(dsn, sizes.inserts), f"N={sizes.inserts:,}")
    results.add("enqueue", pg_jobq.enqueue_one(dsn, sizes.inserts), f"N={sizes.inserts:,}")
    results.add("copy", pg_baselines.copy_rows(dsn, sizes.copy), f"N={sizes.copy:,}")
    results.add("enqueue_many", pg_jobq.enqueue_many(dsn, sizes.copy), f"N={sizes.copy:,}")
    for batch in BATCHES:
        n = sizes.claim_k1 if batch == 1 else sizes.claim
        results.add(f"claim{batch}", *pg_baselines.claim_drain(dsn, batch, n, root))
    results.add("jobq2x1", *pg_jobq.worker_drain(dsn, sizes.drain, "2x1", root))
    if peers_python is not None:
        measure_peer(peers_python, "pgqueuer", dsn, sizes.drain, root, results)
    results.add("jobq1x2", *pg_jobq.worker_drain(dsn, sizes.drain, "1x2", root))
    if peers_python is not None:
        measure_peer(peers_python, "procrastinate", dsn, sizes.drain_slow, root, results)
    results.add("settle", *bench_pg_engine.engine_drain(dsn, sizes.drain, 50, root))
    results.add("settle_kept", *bench_pg_engine.engine_drain(dsn, sizes.drain, 50, root,
                                                             sizes.kept))


def measure_sigkill(python: Path, dsn: str, root: Path) -> float:
    answer = peer(python, "pgqueuer", "sigkill", dsn, 0, root)
    return float(answer["seconds"])  # type: ignore[arg-type]


# -- reporting ----------------------------------------------------------------------------------

ROWS = [("INSERT + COMMIT, 1 row per transaction, 1 connection", "insert", "rows/s"),
        ("jobq Queue.enqueue, 1 job per call", "enqueue", "jobs/s"),
        ("COPY, one transaction", "copy", "rows/s"),
        ("jobq Queue.enqueue_many, one call", "enqueue_many", "jobs/s"),
        *((f"bare claim loop, 2 processes, K={k}", f"claim{k}", "jobs/s") for k in BATCHES),
        ("jobq drain, 2 workers x 1 child (jobq worker --burst -c 1)", "jobq2x1", "jobs/s"),
        ("jobq drain, 1 worker x 2 children (jobq worker --burst -c 2)", "jobq1x2", "jobs/s"),
        ("pgqueuer drain, 2 worker processes", "pgqueuer", "jobs/s"),
        ("procrastinate drain, 2 worker processes", "procrastinate", "jobs/s"),
        ("jobq settle-level drain, 2 processes, K=50 (no worker)", "settle", "jobs/s"),
        ("the same, with M finished jobs kept", "settle_kept", "jobs/s")]
RATIOS = [("COPY / INSERT loop", "copy", "insert"),
          ("claim loop K=50 / pgqueuer", "claim50", "pgqueuer"),
          ("pgqueuer / procrastinate", "pgqueuer", "procrastinate"),
          *((f"claim loop K={k} / K=50", f"claim{k}", "claim50") for k in BATCHES if k != 50),
          ("jobq 1 worker x 2 / pgqueuer", "jobq1x2", "pgqueuer"),
          ("jobq 1 worker x 2 / claim loop K=50", "jobq1x2", "claim50"),
          ("jobq worker drain / settle-level drain", "jobq2x1", "settle")]
# Issue 16's targets: (what, jobq's figure, the baseline, at least (or at most) this ratio).
TARGETS = [("drain (2 workers x 1) / pgqueuer", "jobq2x1", "pgqueuer", ">=", 3.0),
           ("drain (2 workers x 1) / procrastinate", "jobq2x1", "procrastinate", ">=", 10.0),
           ("drain (2 workers x 1) / bare claim loop K=50", "jobq2x1", "claim50", ">=", 0.4),
           ("Queue.enqueue 1 by 1 / INSERT + COMMIT loop", "enqueue", "insert", ">=", 0.8),
           ("Queue.enqueue_many / COPY", "enqueue_many", "copy", ">=", 0.5),
           ("claim cost, M kept / none (drain none / kept)", "settle", "settle_kept", "<=", 1.5)]
SIGKILL_TARGET = 0.3  # seconds


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(results: Results, top: str, bottom: str) -> float | None:
    a, b = results.median(top), results.median(bottom)
    return None if a is None or b is None else a / b


def _round_ratios(results: Results, top: str, bottom: str) -> str:
    """The ratio's spread over the rounds (each round measures both figures, one after the
    other): on a shared machine a median ratio alone hides how far single rounds stray."""
    tops, bottoms = results.rates.get(top, []), results.rates.get(bottom, [])
    ratios = [a / b for a, b in zip(tops, bottoms) if b]
    return f" (rounds {min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""


def print_header(args: argparse.Namespace, sizes: Sizes, server_dsn: str, dsn: str,
                 versions: dict[str, str]) -> None:
    version, settings = server_info(dsn)
    psycopg = pg_server.psycopg_module()
    runs = f"median of {args.runs} interleaved run{'s' if args.runs != 1 else ''}"
    print(f"jobq on PostgreSQL vs the raw server and its peers ({'quick' if args.quick else 'full'};"
          f" {runs})")
    print(f"  server:    {version}")
    print(f"             at {server_dsn}, database {psycopg.conninfo.conninfo_to_dict(dsn)['dbname']}"
          " (made for this run, dropped at its end)")
    print(f"  settings:  {', '.join(f'{k}={v}' for k, v in settings.items())}")
    print(f"  machine:   {platform.node()}, {os.cpu_count()} CPUs"
          f" ({len(os.sched_getaffinity(0))} usable), Linux {platform.release()}, shared with"
          " other work: figures are rough, ratios within this run are what to read")
    print(f"  baselines: {sys.executable} ({platform.python_version()}), psycopg"
          f" {psycopg.__version__}")
    print(f"  jobq:      {pg_jobq.REPO} (this checkout), same interpreter")
    peers = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "not measured"
    print(f"  peers:     {VENV / 'bin' / 'python'}: {peers}")
    print(f"  sizes:     drains N={sizes.drain:,} (jobq, pgqueuer), N={sizes.drain_slow:,}"
          f" (procrastinate); M={sizes.kept:,} finished jobs kept")
    print()


def print_results(results: Results, kills: dict[str, list[float]]) -> None:
    width = max(len(r[0]) for r in ROWS)
    print("figures (drains: from starting the processes to the last recorded completion):")
    for label, key, unit in ROWS:
        spread = results.rates.get(key, [])
        extra = f" (runs {min(spread):,.0f}-{max(spread):,.0f})" if len(spread) > 1 else ""
        print(f"  {label:<{width}}  {_rate(results.median(key)):>9} {unit}{extra}"
              f"   {results.notes.get(key, 'not measured')}")
    print()
    print("other ratios (same run, same server):")
    for label, top, bottom in RATIOS:
        ratio = _ratio(results, top, bottom)
        print(f"  {label + ':':<42} {'—' if ratio is None else f'{ratio:.2f}x'}")
    print()
    print("SIGKILL of the worker running a job, until another worker starts it:")
    for system in ("jobq", "pgqueuer"):
        seconds = kills.get(system)
        print(f"  {system + ':':<15}" + ("not measured (--no-peers or --no-sigkill)"
                                         if not seconds else pg_jobq.summary(seconds)))
    print("  (pgqueuer's defaults: heartbeat_timeout 30 s, dequeue_timeout 30 s; procrastinate:"
          " the job stays 'doing' until user code retries it)")
    print()
    print("durability, as each system's own session reads it:")
    for system, text in results.durability.items():
        print(f"  {system + ':':<15}{text}")
    print()
    print("issue 16's targets (each against a figure of this run):")
    width = max(len(t[0]) for t in TARGETS)
    for goal, top, bottom, sense, limit in TARGETS:
        ratio = _ratio(results, top, bottom)
        verdict = "—" if ratio is None else "PASS" if (
            ratio >= limit if sense == ">=" else ratio <= limit) else "MISS"
        shown = "—" if ratio is None else f"{ratio:.2f}x"
        print(f"  {goal:<{width}}  target {sense} {f'{limit:g}x':<6} measured {shown:>7}  {verdict}"
              f"{_round_ratios(results, top, bottom)}")
    seconds = kills.get("jobq")
    median = statistics.median(seconds) if seconds else None
    verdict = "—" if median is None else "PASS" if median <= SIGKILL_TARGET else "MISS"
    shown = "—" if median is None else f"{median:.3f} s"
    print(f"  {'SIGKILLed worker: its job running again':<{width}}  target <="
          f" {f'{SIGKILL_TARGET:g} s':<6} measured {shown:>7}  {verdict}")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (about 2 minutes)")
    parser.add_argument("--runs", type=int, help="runs per figure, median reported (default 3;"
                        " 1 with --quick)")
    parser.add_argument("--kept", type=int, help="finished jobs kept for the claim cost (default"
                        " 1,000,000; 100,000 with --quick)")
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN),
                        help="a database on the server to measure, used to create the run's own")
    parser.add_argument("--no-peers", action="store_true", help="raw baselines and jobq only")
    parser.add_argument("--no-sigkill", action="store_true",
                        help="skip pgqueuer's SIGKILL re-run (30-60 s of waiting)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.kept is not None and args.kept < 1:
        parser.error("--kept must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.kept is not None:
        sizes = dataclasses.replace(sizes, kept=args.kept)
    psycopg = pg_server.psycopg_module()
    try:
        with scratch_dir("pg-") as root:
            peers_python = None if args.no_peers else bench_venv.ensure_venv(VENV, PINS)
            versions = {} if peers_python is None else bench_venv.installed_versions(
                peers_python, [n for n in PINS if not n.startswith("psycopg")])
            pg_server.compile_sources()
            with bench_database(args.dsn) as dsn:
                print_header(args, sizes, args.dsn, dsn, versions)
                results = Results()
                results.durability["jobq"] = pg_jobq.durability(dsn)[0]
                for run in range(args.runs):
                    print(f"round {run + 1} of {args.runs}...", file=sys.stderr)
                    measure_round(dsn, sizes, root, peers_python, results)
                print(f"jobq SIGKILL re-runs ({sizes.kills})...", file=sys.stderr)
                kills = {"jobq": pg_jobq.sigkill_trials(dsn, root, sizes.kills)}
                if peers_python is not None and not args.no_sigkill:
                    print("pgqueuer SIGKILL re-run (30-60 s)...", file=sys.stderr)
                    kills["pgqueuer"] = [measure_sigkill(peers_python, dsn, root)]
                print_results(results, kills)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except psycopg.OperationalError as exc:
        print(f"cannot use PostgreSQL at {args.dsn}: {str(exc).strip().splitlines()[0]}",
              file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:  # the peers' venv could not be made
        print(f"failed: {' '.join(map(str, exc.cmd))}\n{exc.stderr}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
