"""A worker child lets more objects pile up between collections than CPython's default
(workers.child_process.collect_less), unless the application asked for more already; it does
nothing on SIGINT and SIGTERM, and the processes it forks take them as usual
(workers.child_process.hold_shutdown_signals)."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobq import Queue
from workers import Worker

from jobtasks import gc_threshold

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def thresholds() -> Iterator[None]:
    """The test process's thresholds (its children inherit them), put back after the test."""
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize(("given", "in_child"), [
    ((700, 10, 10), (10_000, 10, 10)),
    ((50_000, 20, 5), (50_000, 20, 5)),
    ((0, 10, 10), (0, 10, 10)),  # collection off: left off
])
def test_a_child_collects_after_thousands_of_objects(queue: Queue, thresholds: None,
                                                     given: tuple[int, int, int],
                                                     in_child: tuple[int, int, int]) -> None:
    gc.set_threshold(*given)
    job = queue.enqueue(gc_threshold)
    Worker(queue, concurrency=1).run(burst=True)
    assert queue.result(job) == in_child


# Run in a process of its own: it changes the signal handlers and at-fork hooks of the process.
_FORKS = r"""
import os, signal, sys, threading
sys.path.insert(0, "tests")
from jobtasks import signal_names
from workers.child_process import hold_shutdown_signals

def names():
    return " ".join(signal_names())

def forked(body):
    pid = os.fork()
    if pid == 0:
        body()
        os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def report():
    print(names(), flush=True)

early = []  # a hook that runs in the forked process before the child's own (registered first)
os.register_at_fork(after_in_child=lambda: early and os.kill(os.getpid(), early[0]))
hold_shutdown_signals()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGINT)
print("holder", names(), flush=True)
print("forked", forked(report), flush=True)
result = []
thread = threading.Thread(target=lambda: result.append(forked(report)))
thread.start(); thread.join()
print("from a thread", result[0], flush=True)

def own_handler_then_fork():
    signal.signal(signal.SIGTERM, lambda *_: None)
    sys.exit(forked(report))
print("grandchild", forked(own_handler_then_fork), flush=True)
print("mask after", sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), flush=True)
early.append(signal.SIGTERM)
print("signalled early", forked(lambda: None), flush=True)
"""


def test_the_child_does_nothing_on_shutdown_signals_and_its_forks_take_them_as_usual():
    """SIGINT and SIGTERM do nothing to the process that holds them; a process it forks gets the
    defaults, even for a signal sent to it before its at-fork hooks ran (a Pool's terminate()
    hung on that); a process that forked sets its own for its own forks."""
    run = subprocess.run([sys.executable, "-c", _FORKS], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "holder _nothing _nothing",
        "default_int_handler SIG_DFL",
        "forked 0",
        "default_int_handler SIG_DFL",
        "from a thread 0",
        "default_int_handler <lambda>",
        "grandchild 0",
        "mask after []",
        f"signalled early {-signal.SIGTERM}",
    ]
