"""A worker child lets more objects pile up between collections than CPython's default
(workers.child_process.collect_less), unless the application asked for more already."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from jobq import Queue
from workers import Worker

from jobtasks import gc_threshold


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
