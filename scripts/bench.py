#!/usr/bin/env python3
"""Every performance target of jobq in one run: each figure beside its baseline, ratio and verdict.

Usage::

    python scripts/bench.py [--quick] [--no-peers]

Runs, one after another and with this interpreter, scripts/bench_enqueue.py (targets 1-3),
bench_worker.py (4's start-up, 5, 6), bench_scale.py (7) and bench_peers.py (4's drains against
Huey SqliteHuey and diskcache Deque), streaming their own tables to the terminal; each also writes
its figures as JSON (``--json``) into a temporary directory, from which one summary table is
printed: target, figure, baseline measured in the same run, ratio, goal, verdict.

``--quick`` passes ``--quick`` to the scripts and runs bench_scale on QUICK_SCALE_JOBS jobs: about a
minute in all (the first run also builds the peers' venv under ``.bench-tmp/``). The full run
measures target 7 on FULL_SCALE_JOBS jobs and the rest at the scripts' full sizes, in under ten
minutes on a 2-CPU machine. ``--no-peers`` skips bench_peers.py; target 4's ratios then read
"not measured".

The exit status is 0 whether or not the targets are met (this is a report), 1 if a script failed,
130 on Ctrl-C or SIGTERM, which are passed on to the running script as SIGINT so that it removes
its files under ``.bench-tmp/``; the JSON files are removed here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
TARGET_SCALE_JOBS = 1_000_000  # the job count target 7 is stated for
FULL_SCALE_JOBS = 1_000_000
QUICK_SCALE_JOBS = 20_000
PEER_SYSTEMS = "jobq,huey,diskcache"  # the peers target 4 names, at their default durability
MAX_COMPACTED = 10 * 1024 * 1024  # as bench_scale.py judges it
STOP_TIMEOUT = 60.0  # seconds for an interrupted script to clean up
NOT_MEASURED = "not measured"

Figures = dict[str, Any]  # one script's JSON: figure name -> {"value", "baseline", "ratio", ...}


@dataclass(frozen=True)
class Step:
    """One script to run, and its arguments in either mode."""

    name: str
    script: str
    quick: tuple[str, ...]
    full: tuple[str, ...]


STEPS = [
    Step("enqueue", "bench_enqueue.py", ("--quick",), ()),
    Step("worker", "bench_worker.py", ("--quick",), ()),
    Step("scale", "bench_scale.py", ("--jobs", str(QUICK_SCALE_JOBS)),
         ("--jobs", str(FULL_SCALE_JOBS))),
    Step("peers", "bench_peers.py", ("--quick", "--systems", PEER_SYSTEMS),
         ("--systems", PEER_SYSTEMS)),
]


@dataclass(frozen=True)
class Row:
    target: str
    figure: str
    baseline: str
    ratio: str
    goal: str
    verdict: str


# -- running the scripts -----------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a script as Ctrl-C would, so that it cleans up; kill it if it does not end."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_step(step: Step, quick: bool, json_path: Path) -> int:
    """Run one script, its output going straight to ours; return its exit status.

    The script runs in a session of its own, so that a Ctrl-C reaches only this process, which
    passes it on once (a second SIGINT could cut the script's clean-up short).
    """
    cmd = [sys.executable, str(SCRIPTS / step.script), *(step.quick if quick else step.full),
           "--json", str(json_path)]
    print(f"\n==> {' '.join(cmd[1:])}", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True)
    try:
        status = proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        raise
    print(f"==> {step.script}: exit status {status}, {time.monotonic() - start:.0f} s", flush=True)
    return status


def load(path: Path) -> Figures | None:
    """A script's figures, or None if it wrote none (it failed, or was skipped)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- the summary -------------------------------------------------------------------------------


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _us(value: float) -> str:
    return f"{value:,.0f} us"


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def _claim(seconds: float) -> str:
    return f"{seconds * 1e3:,.3f} ms"


def _mib(size: float) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:,.0f} KiB"
    return f"{size / 1024 / 1024:,.1f} MiB"


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def missing(target: str, figure: str, goal: str) -> Row:
    return Row(target, f"{figure}: {NOT_MEASURED}", "-", "-", goal, NOT_MEASURED)


def ratio_row(target: str, figure: str, base: str, data: Figures | None, key: str,
              show: Callable[[float], str], goal: str, ok: Callable[[float], bool]) -> Row:
    """A figure against its baseline: judged on the ratio."""
    if data is None or key not in data:
        return missing(target, figure, goal)
    fig = data[key]
    return Row(target, f"{figure}: {show(fig['value'])}", f"{base}: {show(fig['baseline'])}",
               f"{fig['ratio']:.2f}x", goal, _verdict(ok(fig["ratio"])))


def value_row(target: str, figure: str, value: float | None, show: Callable[[float], str],
              goal: str, ok: Callable[[float], bool], note: str = "") -> Row:
    """A figure with an absolute goal: judged on its value."""
    if value is None:
        return missing(target, figure, goal)
    return Row(target, f"{figure}: {show(value)}{note}", "-", "-", goal, _verdict(ok(value)))


def _get(data: Figures | None, key: str, field: str = "value") -> Any:
    """``data[key][field]``, or None if the script did not run or failed."""
    return data[key][field] if data and key in data else None


def summary_rows(results: dict[str, Figures | None]) -> list[Row]:
    enqueue, worker = results.get("enqueue"), results.get("worker")
    scale, peers = results.get("scale"), results.get("peers")
    n = f"{scale['jobs']:,}" if scale else "N"
    small = f"{scale['small_jobs']:,}" if scale else "1,000"
    takeover_max = _get(worker, "takeover", "max")
    rows = [
        ratio_row("1", "enqueue, durable, 1 producer", "raw write+fdatasync", enqueue, "enqueue",
                  _rate, ">= 0.80x", lambda r: r >= 0.8),
        ratio_row("2", "enqueue, durable, 4 producers", "4 raw write+fdatasync", enqueue,
                  "enqueue_4", _rate, ">= 0.80x", lambda r: r >= 0.8),
        ratio_row("3", "enqueue_many", "raw pickle+append, 1 fdatasync", enqueue, "enqueue_many",
                  _rate, ">= 0.50x", lambda r: r >= 0.5),
        *drain_rows(peers),
        startup_row(worker),
        save_row(worker),
        value_row("6", "SIGKILLed job running elsewhere, median",
                  _get(worker, "takeover", "median"), _ms, "<= 300 ms", lambda v: v <= 300,
                  f" (max {_ms(takeover_max)})" if takeover_max is not None else ""),
    ]
    for key, label in (("claim1", "claim of 1"), ("claim_batch", "claim of 100, per job"),
                       ("supervisor_rss", "worker supervisor RSS"),
                       ("child_rss", "worker child RSS")):
        show = _mib if key.endswith("rss") else _claim
        rows.append(ratio_row("7", f"{label}, {n} queued", f"{small} queued", scale, key, show,
                              "<= 1.5x", lambda r: r <= 1.5))
    rows.append(value_row("7", f"open, {n} records", _get(scale, "open"),
                          lambda v: f"{v * 1e3:,.1f} ms", "<= 1 s", lambda v: v <= 1.0))
    rows.append(value_row("7", "dir after purge + compact", _get(scale, "compacted_size"), _mib,
                          "< 10 MiB", lambda v: v < MAX_COMPACTED))
    return rows


def drain_rows(peers: Figures | None) -> list[Row]:
    """Issue 19's drain targets, for each size the peers script measured."""
    rows = []
    for suffix in ("", "_small"):
        jobs = _get(peers, f"vs_huey{suffix}", "jobs")
        if suffix and jobs is None:
            continue  # a quick run drains one size only
        of = f" of {jobs:,}" if jobs else ""
        rows += [
            ratio_row("4", f"drain{of}, 2 processes: jobq", "huey SqliteHuey", peers,
                      f"vs_huey{suffix}", _rate, ">= 5x", lambda r: r >= 5.0),
            ratio_row("4", f"drain{of}, 2 processes: jobq", "diskcache Deque", peers,
                      f"vs_diskcache{suffix}", _rate, ">= 1.2x", lambda r: r >= 1.2),
            ratio_row("4", f"drain{of}, 1 process: jobq", "diskcache Deque", peers,
                      f"drain1_vs_diskcache{suffix}", _rate, ">= 1.0x", lambda r: r >= 1.0)]
    return rows


def startup_row(worker: Figures | None) -> Row:
    """Start to the first job, judged on its value; ``python -c pass`` shown beside it."""
    row = value_row("4", "jobq worker start to first job running", _get(worker, "startup"),
                    _ms, "< 50 ms", lambda v: v < 50)
    python = _get(worker, "startup", "baseline") if worker else None
    if python is None or row.verdict == NOT_MEASURED:
        return row
    ratio = f"{_get(worker, 'startup') / python:.2f}x"
    return Row(row.target, row.figure, f"python -c pass: {_ms(python)}", ratio, row.goal,
               row.verdict)


def save_row(worker: Figures | None) -> Row:
    """ctx.save against one fdatasync, judged on the worst run (the target holds in every run)."""
    row = ratio_row("5", "ctx.save median", "raw write+fdatasync", worker, "save", _us,
                    "<= 2x every run", lambda r: r <= 2.0)
    worst = _get(worker, "save", "worst_ratio") if worker else None
    if worst is None or row.verdict == NOT_MEASURED:
        return row
    return Row(row.target, row.figure, row.baseline, f"{row.ratio} (worst run {worst:.2f}x)",
               row.goal, _verdict(worst <= 2.0))


def print_summary(rows: Sequence[Row], results: dict[str, Figures | None]) -> None:
    table = [("target", "figure", "baseline (same run)", "ratio", "goal", "verdict"),
             *((r.target, r.figure, r.baseline, r.ratio, r.goal, r.verdict) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    print("\nsummary: every target, each figure next to its baseline measured in this run")
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    met = sum(r.verdict == "MET" for r in rows)
    print(f"\n{met} of {len(rows)} met", end="")
    unmeasured = sum(r.verdict == NOT_MEASURED for r in rows)
    print(f", {unmeasured} not measured." if unmeasured else ".")
    scale = results.get("scale")
    if scale and scale["jobs"] < TARGET_SCALE_JOBS:
        print(f"Note: target 7 is stated for {TARGET_SCALE_JOBS:,} jobs queued; this run used"
              f" {scale['jobs']:,}.")


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"small workloads, bench_scale on {QUICK_SCALE_JOBS:,} jobs"
                             " (about a minute)")
    parser.add_argument("--no-peers", action="store_true",
                        help="skip bench_peers.py: target 4's ratios are not measured")
    return parser.parse_args(argv)


def missing_modules() -> list[str]:
    """jobq's own dependencies, if this interpreter lacks them: every script would fail."""
    import importlib.util
    return [name for name in ("jobq", "structlog", "filelock")
            if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_modules()
    if missing:
        print(f"bench.py: {sys.executable} cannot import {', '.join(missing)}: run it with the"
              " project's environment (pip install -e '.[test]', see the README)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)  # stop the running script as on Ctrl-C
    # Started in the background, a process ignores SIGINT, and so would the scripts it starts:
    # a handler here (reset to the default in them by exec) lets them take the SIGINT of stop().
    signal.signal(signal.SIGINT, signal.default_int_handler)
    steps = [s for s in STEPS if not (args.no_peers and s.name == "peers")]
    tmp = Path(tempfile.mkdtemp(prefix="jobq-bench-"))
    start = time.monotonic()
    try:
        print(f"jobq benchmarks ({'quick' if args.quick else 'full'}):"
              f" {', '.join(s.script for s in steps)}", flush=True)
        failed = [s.script for s in steps if run_step(s, args.quick, tmp / f"{s.name}.json")]
        results = {s.name: load(tmp / f"{s.name}.json") for s in steps}
        print_summary(summary_rows(results), results)
        print(f"Total {time.monotonic() - start:.0f} s.")
        if failed:
            print(f"FAILED: {', '.join(failed)} (their figures read {NOT_MEASURED!r})")
            return 1
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
