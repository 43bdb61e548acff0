#!/usr/bin/env python3
"""How long ``jobq worker`` takes from start to its first job running, interpreter start-up
included, against ``python -c pass`` measured in the same run (issue 19: under 50 ms on a warm
page cache).

Usage::

    python scripts/bench_startup.py [--runs N] [--against CHECKOUT]

Printed, medians of N interleaved rounds (default 15) after one warm-up round: ``python -c
pass``, ``python -c "import jobq"``, ``jobq --version``, and ``jobq worker --burst`` on a queue
holding one no-op job, timed from ``Popen`` to the file that job creates (its first line runs)
and to the worker's exit; each as wall clock and CPU time (user + system: less inflated than the
wall clock by other processes on a shared machine), and as ratios to ``python -c pass``. The
worker's CPU up to its first job is the supervisor's and the child's, as the kernel counts them
when the job starts (Linux). With ``--against``, another checkout's jobq is measured in the same
rounds (before/after a change). Bytecode is compiled first and the children run without
PYTHONDONTWRITEBYTECODE, as users run jobq; every command runs in an empty directory, so the
current directory's jobq (another checkout) is never the one measured. Every command runs on
the interpreter of ``.bench-tmp/jobq-venv``, which starts as a ``pip install .`` does, without the
project environment's editable-install finder (see ``bench_venv.jobq_python``).
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

import bench_venv  # noqa: E402

_ENQUEUE = ("import sys\nfrom jobq import Queue\nfrom startup_task import touch\n"
            "with Queue(sys.argv[1]) as queue:\n    queue.enqueue(touch, sys.argv[2])\n")

Sample = tuple[float, ...]


def cpu() -> float:
    """CPU seconds (user + system) of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Checkout:
    """One checkout's commands, run with its jobq (and this one's ``startup_task``) from an
    empty directory."""

    def __init__(self, repo: Path, cwd: Path, python: str) -> None:
        self.repo, self.cwd, self.python = repo, cwd, python
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPATH"] = os.pathsep.join([str(repo), str(SCRIPTS)])
        self.jobq = [python, "-m", "jobq.cli"]
        self._count = iter(range(1 << 30))

    def run(self, command: list[str]) -> Callable[[], Sample]:
        """Wall clock and CPU time of one run of ``command``."""
        def once() -> Sample:
            c, t = cpu(), time.perf_counter()
            subprocess.run(command, check=True, env=self.env, cwd=self.cwd,
                           stdout=subprocess.DEVNULL)
            return time.perf_counter() - t, cpu() - c
        return once

    def worker(self) -> Sample:
        """Popen of ``jobq worker --burst`` to its job's file, the CPU used by then, to the
        worker's exit, and the CPU time of the worker and its child."""
        n = next(self._count)
        home, flag = self.cwd / f"q{n}", self.cwd / f"ran{n}"
        # The queue is made by the checkout's own jobq: another checkout may know another
        # store schema (an older jobq refuses a newer one).
        subprocess.run([sys.executable, "-c", _ENQUEUE, str(home), str(flag)], check=True,
                       env=self.env, cwd=self.cwd)
        c, t = cpu(), time.perf_counter()
        proc = subprocess.Popen([*self.jobq, "worker", "--burst", "--dir", str(home)],
                                env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        while not flag.exists():
            if proc.poll() is not None and not flag.exists():
                raise SystemExit(f"the worker exited ({proc.returncode}) before its job ran")
            time.sleep(0.0002)
        started = time.perf_counter() - t
        proc.wait(timeout=60)
        return started, int(flag.read_text()) / 1e9, time.perf_counter() - t, cpu() - c

    def measures(self) -> dict[str, Callable[[], Sample]]:
        return {"python -c pass": self.run([self.python, "-c", "pass"]),
                'python -c "import jobq"': self.run([self.python, "-c", "import jobq"]),
                "jobq --version": self.run([*self.jobq, "--version"]),
                "jobq worker --burst": self.worker}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--against", type=Path, action="append", default=[],
                        metavar="CHECKOUT", help="another checkout's jobq, in the same rounds")
    args = parser.parse_args()
    repos = [REPO, *(p.resolve() for p in args.against)]
    python = str(bench_venv.jobq_python())
    for repo in repos:
        for package in ("jobq", "workers"):
            compileall.compile_dir(str(repo / package), quiet=1)
    samples: dict[tuple[int, str], list[Sample]] = {}
    with tempfile.TemporaryDirectory(prefix="jobq-bench-startup-") as tmp:
        checkouts = []
        for i, repo in enumerate(repos):
            (Path(tmp) / str(i)).mkdir()
            checkouts.append(Checkout(repo, Path(tmp) / str(i), python))
        for round_ in range(args.runs + 1):  # round 0 warms the page cache and bytecode up
            for i, checkout in enumerate(checkouts):
                for label, measure in checkout.measures().items():
                    sample = measure()
                    if round_:
                        samples.setdefault((i, label), []).append(sample)
    print(f"medians of {args.runs} interleaved rounds; {python} ({sys.version.split()[0]});"
          f" load {os.getloadavg()[0]:.2f} (wall clock; CPU = user + system of the processes)")
    for i, repo in enumerate(repos):
        print(f"{repo}:")
        med = {label: [statistics.median(s[k] for s in got) * 1000 for k in range(len(got[0]))]
               for (j, label), got in samples.items() if j == i}
        base, base_cpu = med["python -c pass"]
        rows = [(label, *med[label]) for label in med if label != "jobq worker --burst"]
        started, started_cpu, exited, exited_cpu = med["jobq worker --burst"]
        rows += [("jobq worker --burst: first job running", started, started_cpu or None),
                 ("jobq worker --burst: exited", exited, exited_cpu)]
        for label, ms, cpu_ms in rows:
            used = "" if cpu_ms is None else \
                f"   CPU {cpu_ms:6.1f} ms  {cpu_ms / base_cpu:5.2f}x"
            print(f"  {label:42} {ms:7.1f} ms  {ms / base:5.2f}x python -c pass{used}")


if __name__ == "__main__":
    main()
