#!/usr/bin/env python3
"""How long ``jobq worker`` takes from start to its first job running, interpreter start-up
included, against ``python -c pass`` measured in the same run (issue 19: under 50 ms on a warm
page cache).

Usage::

    python scripts/bench_startup.py [--runs N]

Printed, medians of N runs (default 15) after one warm-up each: ``python -c pass``,
``python -c "import jobq"``, ``jobq --version``, and ``jobq worker --burst`` on a queue holding
one no-op job, timed from ``Popen`` to the file that job creates (its first line runs) and to
the worker's exit. Each also as a ratio to ``python -c pass``. Bytecode is compiled first and
the children run without PYTHONDONTWRITEBYTECODE, as users run jobq.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
sys.path[:0] = [str(REPO), str(SCRIPTS)]  # this checkout's jobq, not an installed one

from jobq import Queue  # noqa: E402
from startup_task import touch  # noqa: E402

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = os.pathsep.join([str(REPO), str(SCRIPTS)])
JOBQ = [sys.executable, "-m", "jobq.cli"]


def run(command: list[str]) -> Callable[[], tuple[float, ...]]:
    def once() -> tuple[float, ...]:
        t = time.perf_counter()
        subprocess.run(command, check=True, env=ENV, stdout=subprocess.DEVNULL)
        return (time.perf_counter() - t,)
    return once


def worker(root: Path) -> Callable[[], tuple[float, ...]]:
    """Popen of ``jobq worker --burst`` to the job's file, and to the worker's exit."""
    count = iter(range(1 << 30))

    def once() -> tuple[float, ...]:
        n = next(count)
        home, flag = root / f"q{n}", root / f"ran{n}"
        with Queue(str(home)) as queue:
            queue.enqueue(touch, str(flag))
        t = time.perf_counter()
        proc = subprocess.Popen([*JOBQ, "worker", "--burst", "--dir", str(home)], env=ENV,
                                cwd=SCRIPTS, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not flag.exists():
            if proc.poll() is not None and not flag.exists():
                raise SystemExit(f"the worker exited ({proc.returncode}) before its job ran")
            time.sleep(0.0002)
        started = time.perf_counter() - t
        proc.wait(timeout=60)
        return started, time.perf_counter() - t
    return once


def medians(fn: Callable[[], tuple[float, ...]], runs: int) -> list[float]:
    fn()  # warm-up: page cache, bytecode
    samples = [fn() for _ in range(runs)]
    return [statistics.median(s[i] for s in samples) * 1000 for i in range(len(samples[0]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for package in ("jobq", "workers"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    with tempfile.TemporaryDirectory(prefix="jobq-bench-startup-") as tmp:
        base = medians(run([sys.executable, "-c", "pass"]), args.runs)[0]
        rows = [("python -c pass", base),
                ('python -c "import jobq"',
                 medians(run([sys.executable, "-c", "import jobq"]), args.runs)[0]),
                ("jobq --version", medians(run([*JOBQ, "--version"]), args.runs)[0])]
        started, exited = medians(worker(Path(tmp)), args.runs)
        rows += [("jobq worker --burst: first job running", started),
                 ("jobq worker --burst: exited", exited)]
    print(f"medians of {args.runs} runs; python {sys.version.split()[0]};"
          f" load {os.getloadavg()[0]:.2f}")
    for label, ms in rows:
        print(f"  {label:42} {ms:7.1f} ms  {ms / base:5.2f}x python -c pass")


if __name__ == "__main__":
    main()
