#!/usr/bin/env python3
"""Instructions per job of a worker child's loop, for callgrind (deterministic, unlike CPU time).

    python scripts/callgrind_child.py make Q [--jobs 20000]   # a queue of N no-op jobs, indexed
    valgrind --tool=callgrind python scripts/callgrind_child.py drain COPY --jobs K

``drain`` runs one child-like ``workers.child.Runner`` in this process over a copy of Q, as
scripts/bench_child.py does (its events in JSON, to a file), and stops once K jobs are recorded.
Two drains of copies of the same queue (K = all and K = a few thousand) differ by the loop's
instructions for the jobs between them, start-up and shut-down cancelled: divide by their count.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from bench_child import log_json_to, run_child  # noqa: E402
from bench_tasks import noop  # noqa: E402
from jobq import Queue  # noqa: E402
import workers.child  # noqa: E402
from workers.board import Board  # noqa: E402
from workers.child import Runner  # noqa: E402


def make(path: Path, jobs: int) -> None:
    with Queue(path) as queue:
        queue.enqueue_many(noop, [()] * jobs)
        queue.store.catch_up()


def drain(path: Path, jobs: int, events: Path) -> None:
    # Under callgrind a job runs some 50 times slower: batches would overrun the 20 ms window and
    # the watcher would hand claims back, at moments that vary. Natively, 100 no-op jobs take
    # about 10 ms, inside the window: a batch is the prefetch's 100 claims, as here.
    workers.child.BATCH_WINDOW = 3600.0
    with open(events, "w") as out:
        log_json_to(out)
        with Queue(path) as queue:

            def stop_after_jobs(runner: Runner, board: Board) -> None:
                settle, done = runner.engine.settle, [0]

                def counting(finished, *args, **kwargs):  # stops the loop after ``jobs`` recorded
                    done[0] += len(finished)
                    if done[0] >= jobs:
                        board.request_stop()
                    return settle(finished, *args, **kwargs)

                runner.engine.settle = counting

            run_child(queue, stop_after_jobs)
            out.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["make", "drain"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--events", type=Path, default=Path(os.devnull))
    args = parser.parse_args()
    if args.what == "make":
        make(args.path, args.jobs)
    else:
        drain(args.path, args.jobs, args.events)


if __name__ == "__main__":
    main()
