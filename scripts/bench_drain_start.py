#!/usr/bin/env python3
"""A drain timed from the workers' start, as scripts/bench_peers.py times jobq's, with the CPU
of the whole worker trees, against other checkouts in the same interleaved rounds.

    python scripts/bench_drain_start.py [--jobs N] [--runs R] [--processes P] [--against CHECKOUT]

N no-op jobs (``peers.tasks.noop``) are enqueued first (not timed), then P ``jobq worker --burst
-c 1`` processes are started together. Printed, medians of R rounds (after one warm-up round):
the time from just before the first ``Popen`` to the last job's recorded completion (the latest
``updated_at``, as scripts/peers/driver.py reads it), to the first one's, and the CPU time (user
+ system) of the worker processes and their children. Issue 19 judges the drain of 3,000 and
20,000 jobs by 2 processes. Each checkout runs its own jobq (PYTHONPATH), with bytecode
compiled, from an empty directory under ``.bench-tmp/``, removed at the end, on the interpreter
of ``.bench-tmp/jobq-venv`` (``bench_venv.jobq_python``: no editable-install finder to import).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import bench_venv
from bench_scratch import scratch_dir

REPO = Path(__file__).resolve().parent.parent

_FILL = ("import sys\nfrom jobq import Queue\nfrom peers.tasks import noop\n"
         "with Queue(sys.argv[1], fsync=True) as q:\n"
         "    q.enqueue_many(noop, [()] * int(sys.argv[2]))\n")
_TIMES = ("import sys\nfrom jobq import Queue\nwith Queue(sys.argv[1]) as q:\n"
          "    counts = q.counts()\n"
          "    assert counts['succeeded'] == int(sys.argv[2]), counts\n"
          "    times = [s.updated_at for s in q.jobs('succeeded')]\n"
          "print(min(times), max(times))\n")


def children_cpu() -> float:
    """CPU seconds (user + system) of the waited-for descendants so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Checkout:
    def __init__(self, repo: Path, cwd: Path, python: str) -> None:
        self.repo, self.cwd, self.python = repo, cwd, python
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        self.env["PYTHONPATH"] = os.pathsep.join([str(repo), str(repo / "scripts")])
        self._count = iter(range(1 << 30))

    def drain(self, jobs: int, processes: int) -> tuple[float, float, float]:
        """Seconds to the last and to the first recorded completion, and the trees' CPU."""
        home = self.cwd / f"q{next(self._count)}"
        python = [self.python, "-c"]
        subprocess.run([*python, _FILL, str(home), str(jobs)], env=self.env, cwd=self.cwd,
                       check=True)
        cpu, started = children_cpu(), time.time()
        procs = [subprocess.Popen([self.python, "-m", "jobq.cli", "worker", "--burst",
                                   "--dir", str(home), "-c", "1"], env=self.env, cwd=self.cwd,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(processes)]
        for proc in procs:
            if proc.wait(timeout=600) != 0:
                raise SystemExit(f"a worker exited with {proc.returncode}")
        cpu = children_cpu() - cpu
        out = subprocess.run([*python, _TIMES, str(home), str(jobs)], env=self.env, cwd=self.cwd,
                             check=True, capture_output=True, text=True).stdout
        first, last = map(float, out.split())
        shutil.rmtree(home)
        return last - started, first - started, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--against", type=Path, action="append", default=[],
                        metavar="CHECKOUT", help="another checkout's jobq, in the same rounds")
    args = parser.parse_args()
    repos = [REPO, *(p.resolve() for p in args.against)]
    python = str(bench_venv.jobq_python())
    for repo in repos:
        for package in ("jobq", "workers", "scripts"):
            compileall.compile_dir(str(repo / package), quiet=1)
    samples: dict[int, list[tuple[float, float, float]]] = {i: [] for i in range(len(repos))}
    with scratch_dir("drain-start") as tmp:
        checkouts = []
        for i, repo in enumerate(repos):
            (tmp / str(i)).mkdir()
            checkouts.append(Checkout(repo, tmp / str(i), python))
        for round_ in range(args.runs + 1):  # round 0 warms the page cache up
            for i, checkout in enumerate(checkouts):
                sample = checkout.drain(args.jobs, args.processes)
                if round_:
                    samples[i].append(sample)
    print(f"{args.jobs:,} no-op jobs, {args.processes} x `jobq worker --burst -c 1`; medians of"
          f" {args.runs} interleaved rounds; load {os.getloadavg()[0]:.2f}")
    for i, repo in enumerate(repos):
        last, first, cpu = (statistics.median(s[k] for s in samples[i]) for k in range(3))
        print(f"  {str(repo):32} drained {last * 1000:7.1f} ms ({args.jobs / last:8,.0f} jobs/s)"
              f"  first done {first * 1000:6.1f} ms  CPU of the trees {cpu * 1000:7.1f} ms")
        print(f"  {'':32} drains (ms): {' '.join(f'{s[0] * 1000:.0f}' for s in samples[i])}")


if __name__ == "__main__":
    main()
