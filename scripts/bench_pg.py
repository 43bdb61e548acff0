#!/usr/bin/env python3
"""jobq on PostgreSQL against the raw server and its peers: one server, one run, ratios printed.

    python scripts/bench_pg.py [--quick] [--runs N] [--dsn DSN] [--no-peers] [--no-sigkill]

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
3. jobq's own PostgreSQL engine: a slot, printed as not built yet until the engine exists.

The server's version and durability settings are printed first: every figure is only as durable
as they say. Figures are medians of ``--runs`` interleaved runs (the machine is shared; read the
ratios, which compare figures of one run on one server).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import bench_venv
from bench_scratch import BENCH_ROOT, scratch_dir

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
VENV = BENCH_ROOT / "pg-peers-venv"
# The versions measured (the field notes' figures are for these); the venv is rebuilt on change.
PINS = {"pgqueuer": "1.6.0", "procrastinate": "3.10.0", "psycopg[binary]": "3.3.9"}
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes", "commit_delay",
            "wal_level", "shared_buffers", "max_wal_size", "checkpoint_timeout", "max_connections")
MEASURE_TIMEOUT = 1200.0  # seconds for one subprocess measurement
PEERS = {"pgqueuer": "pgqueuer", "procrastinate": "procrastinate"}
NOT_BUILT = "not built yet (no jobq/postgres/ in this checkout; the engine work fills this slot)"


@dataclass(frozen=True)
class Sizes:
    inserts: int  # rows in the INSERT+commit loop
    copy: int  # rows in one COPY
    claim: int  # N for the claim loop at K >= 10
    claim_k1: int  # N for the claim loop at K = 1 (a commit per job: slow)
    drain: int  # N for pgqueuer's drain
    drain_slow: int  # N for procrastinate's drain (a few hundred jobs a second)


QUICK = Sizes(inserts=2_000, copy=20_000, claim=20_000, claim_k1=2_000, drain=5_000,
              drain_slow=1_000)
FULL = Sizes(inserts=20_000, copy=100_000, claim=20_000, claim_k1=20_000, drain=20_000,
             drain_slow=20_000)
BATCHES = (1, 10, 50, 200)


@dataclass
class Results:
    rates: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # per figure: N, lost, durability...

    def add(self, key: str, rate: float, note: str = "") -> None:
        self.rates.setdefault(key, []).append(rate)
        if note:
            self.notes[key] = note

    def median(self, key: str) -> float | None:
        rates = self.rates.get(key)
        return statistics.median(rates) if rates else None


# -- the server ---------------------------------------------------------------------------------


def _psycopg():  # type: ignore[no-untyped-def]
    try:
        import psycopg
    except ImportError:
        sys.exit("bench_pg.py needs psycopg in this interpreter: pip install 'psycopg[binary]'")
    return psycopg


def server_info(dsn: str) -> tuple[str, dict[str, str]]:
    with _psycopg().connect(dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in SETTINGS}
    return version, settings


@contextlib.contextmanager
def bench_database(server_dsn: str) -> Iterator[str]:
    """A database for this run, ``jobq_bench_<pid>``; dropped at the end, with its sessions."""
    psycopg = _psycopg()
    name = f"jobq_bench_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a pid reused after a crash
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield str(psycopg.conninfo.make_conninfo(server_dsn, dbname=name))
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- measuring ----------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    """Children import ``peers`` and ``pg_baselines`` from scripts/ (and nothing of the venv's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(SCRIPTS)
    return env


def _wait(procs: list[subprocess.Popen[str]], what: str) -> list[str]:
    """Each process's stdout once all have exited; stopped (process group) on failure or Ctrl-C."""
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=MEASURE_TIMEOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"{what} failed ({proc.returncode}): {err.strip()[-2000:]}")
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return outputs


def _spawn(cmd: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=cwd, start_new_session=True)


def claim_drain(dsn: str, batch: int, n: int, root: Path) -> tuple[float, str]:
    """The bare claim loop, 2 processes, over n jobs queued by COPY first: jobs/s and a note."""
    import pg_baselines

    pg_baselines.copy_rows(dsn, n)
    started = time.time()
    procs = [_spawn([sys.executable, str(SCRIPTS / "pg_baselines.py"), "claim", "--dsn", dsn,
                     "--batch", str(batch), "--worker", f"w{i}"], root) for i in range(2)]
    _wait(procs, f"claim loop K={batch}")
    outcome = pg_baselines.drain_outcome(dsn, n)
    if outcome["lost"] or outcome["duplicated"]:
        raise RuntimeError(f"claim loop K={batch}: {outcome}")
    steady = n / max(outcome["last"] - outcome["first"], 1e-6)
    return (n / (outcome["last"] - started),
            f"N={n:,}, 0 lost, 0 claimed twice; {steady:,.0f}/s from the first completion")


def peer(python: Path, system: str, workload: str, dsn: str, n: int, root: Path) -> dict[str, object]:
    cmd = [str(python), "-m", "peers.pg_driver", system, workload, "--dsn", dsn, "--dir",
           str(root), "--jobs", str(n)]
    return json.loads(_wait([_spawn(cmd, root)], f"{system} {workload}")[0].strip().splitlines()[-1])


def measure_round(dsn: str, sizes: Sizes, root: Path, peers_python: Path | None,
                  results: Results) -> None:
    import pg_baselines

    results.add("insert", pg_baselines.insert_loop(dsn, sizes.inserts), f"N={sizes.inserts:,}")
    results.add("copy", pg_baselines.copy_rows(dsn, sizes.copy), f"N={sizes.copy:,}")
    for batch in BATCHES:
        n = sizes.claim_k1 if batch == 1 else sizes.claim
        results.add(f"claim{batch}", *claim_drain(dsn, batch, n, root))
    if peers_python is None:
        return
    for system, n in (("pgqueuer", sizes.drain), ("procrastinate", sizes.drain_slow)):
        answer = peer(peers_python, system, "drain", dsn, n, root)
        results.add(system, float(answer["rate"]),  # type: ignore[arg-type]
                    f"N={n:,}; {answer['durability']}")


def jobq_engine() -> str:
    """What jobq's own PostgreSQL engine measured, or why nothing: the slot the engine fills."""
    if not (REPO / "jobq" / "postgres").exists():
        return NOT_BUILT
    return "jobq/postgres/ exists, but this script does not measure it yet"


# -- reporting ----------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def print_header(args: argparse.Namespace, sizes: Sizes, server_dsn: str, dsn: str,
                 versions: dict[str, str]) -> None:
    version, settings = server_info(dsn)
    psycopg = _psycopg()
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
    peers = ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "not measured"
    print(f"  peers:     {VENV / 'bin' / 'python'}: {peers}")
    print()


def print_results(results: Results, sigkill: str, sizes: Sizes) -> None:
    rows = [("INSERT + COMMIT, 1 row per transaction, 1 connection", "insert", "rows/s"),
            ("COPY, one transaction", "copy", "rows/s"),
            *((f"bare claim loop, 2 processes, K={k}", f"claim{k}", "jobs/s") for k in BATCHES),
            ("pgqueuer drain, 2 worker processes", "pgqueuer", "jobs/s"),
            ("procrastinate drain, 2 worker processes", "procrastinate", "jobs/s")]
    width = max(len(r[0]) for r in rows)
    print("raw baselines and peers (drains: from starting the processes to the last recorded"
          " completion):")
    for label, key, unit in rows:
        spread = results.rates.get(key, [])
        extra = f" (runs {min(spread):,.0f}-{max(spread):,.0f})" if len(spread) > 1 else ""
        print(f"  {label:<{width}}  {_rate(results.median(key)):>9} {unit}{extra}"
              f"   {results.notes.get(key, 'not measured')}")
    print(f"  {'jobq PostgreSQL engine':<{width}}  {'—':>9}         {jobq_engine()}")
    print()
    print("ratios (same run, same server):")
    ratios = [("COPY / INSERT loop", "copy", "insert"),
              ("claim loop K=50 / pgqueuer", "claim50", "pgqueuer"),
              ("claim loop K=50 / procrastinate", "claim50", "procrastinate"),
              ("pgqueuer / procrastinate", "pgqueuer", "procrastinate"),
              *((f"claim loop K={k} / K=50", f"claim{k}", "claim50") for k in BATCHES if k != 50)]
    for label, top, bottom in ratios:
        a, b = results.median(top), results.median(bottom)
        print(f"  {label + ':':<34} {'—' if a is None or b is None else f'{a / b:.2f}x'}")
    print()
    print("SIGKILL of the worker running a job, until another worker starts it:")
    print(f"  pgqueuer:      {sigkill}")
    print("  procrastinate: not measured: the job stays 'doing' until user code retries it"
          " (docs/howto/production/retry_stalled_jobs.md in its repository)")
    print(f"  jobq:          {NOT_BUILT}")
    print()
    print("targets for jobq's engine (issue 16), each against a figure of this run:")
    targets = [("drain >= 3x pgqueuer", "pgqueuer"), ("drain >= 10x procrastinate", "procrastinate"),
               ("drain >= 0.4x the bare claim loop at K=50", "claim50"),
               ("enqueue 1-by-1 >= 0.8x the INSERT loop", "insert"),
               ("enqueue_many >= 0.5x COPY", "copy")]
    for goal, key in targets:
        print(f"  {goal}: baseline {_rate(results.median(key))}/s; jobq not measured:"
              " engine not built yet")
    drains = f"N={sizes.drain:,} (pgqueuer), N={sizes.drain_slow:,} (procrastinate)"
    print(f"  (drain sizes this run: {drains}; the issue's figures use N=20,000)")


def measure_sigkill(python: Path, dsn: str, root: Path) -> str:
    answer = peer(python, "pgqueuer", "sigkill", dsn, 0, root)
    return (f"{float(answer['seconds']):.1f} s (its defaults: heartbeat_timeout 30 s,"  # type: ignore[arg-type]
            " dequeue_timeout 30 s; a second worker idle and waiting)")


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (about 2 minutes)")
    parser.add_argument("--runs", type=int, help="runs per figure, median reported (default 3;"
                        " 1 with --quick)")
    parser.add_argument("--dsn", default=os.environ.get("JOBQ_BENCH_PG_DSN", DEFAULT_DSN),
                        help="a database on the server to measure, used to create the run's own")
    parser.add_argument("--no-peers", action="store_true", help="raw baselines only")
    parser.add_argument("--no-sigkill", action="store_true",
                        help="skip pgqueuer's SIGKILL re-run (30-60 s of waiting)")
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    psycopg = _psycopg()
    try:
        with scratch_dir("pg-") as root:
            peers_python = None if args.no_peers else bench_venv.ensure_venv(VENV, PINS)
            versions = {} if peers_python is None else bench_venv.installed_versions(
                peers_python, [n for n in PINS if not n.startswith("psycopg")])
            with bench_database(args.dsn) as dsn:
                print_header(args, sizes, args.dsn, dsn, versions)
                results = Results()
                for run in range(args.runs):
                    print(f"round {run + 1} of {args.runs}...", file=sys.stderr)
                    measure_round(dsn, sizes, root, peers_python, results)
                sigkill = "not measured (--no-peers or --no-sigkill)"
                if peers_python is not None and not args.no_sigkill:
                    print("pgqueuer SIGKILL re-run (30-60 s)...", file=sys.stderr)
                    sigkill = measure_sigkill(peers_python, dsn, root)
                print_results(results, sigkill, sizes)
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
