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
import resource
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


def cpu() -> float:
    """CPU seconds (user + system) of the waited-for children so far: unlike the wall clock,
    not inflated by other processes on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str]) -> Callable[[], tuple[float, ...]]:
    """Wall clock and CPU time of one run of ``command``."""
    def once() -> tuple[float, ...]:
        c, t = cpu(), time.perf_counter()
        subprocess.run(command, check=True, env=ENV, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t, cpu() - c
    return once


def worker(root: Path) -> Callable[[], tuple[float, ...]]:
    """Popen of ``jobq worker --burst`` to the job's file, to the worker's exit, and the CPU
    time of the worker and its child."""
    count = iter(range(1 << 30))

    def once() -> tuple[float, ...]:
        n = next(count)
        home, flag = root / f"q{n}", root / f"ran{n}"
        with Queue(str(home)) as queue:
            queue.enqueue(touch, str(flag))
        c, t = cpu(), time.perf_counter()
        proc = subprocess.Popen([*JOBQ, "worker", "--burst", "--dir", str(home)], env=ENV,
                                cwd=SCRIPTS, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not flag.exists():
            if proc.poll() is not None and not flag.exists():
                raise SystemExit(f"the worker exited ({proc.returncode}) before its job ran")
            time.sleep(0.0002)
        started = time.perf_counter() - t
        proc.wait(timeout=60)
        return started, time.perf_counter() - t, cpu() - c
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
        base, base_cpu = medians(run([sys.executable, "-c", "pass"]), args.runs)
        rows = [("python -c pass", base, base_cpu),
                ('python -c "import jobq"',
                 *medians(run([sys.executable, "-c", "import jobq"]), args.runs)),
                ("jobq --version", *medians(run([*JOBQ, "--version"]), args.runs))]
        started, exited, worker_cpu = medians(worker(Path(tmp)), args.runs)
        rows += [("jobq worker --burst: first job running", started, None),
                 ("jobq worker --burst: exited", exited, worker_cpu)]
    print(f"medians of {args.runs} runs; python {sys.version.split()[0]};"
          f" load {os.getloadavg()[0]:.2f} (wall clock; CPU = user + system of the processes)")
    for label, ms, cpu_ms in rows:
        used = "" if cpu_ms is None else f"   CPU {cpu_ms:6.1f} ms  {cpu_ms / base_cpu:5.2f}x"
        print(f"  {label:42} {ms:7.1f} ms  {ms / base:5.2f}x python -c pass{used}")


if __name__ == "__main__":
    main()
