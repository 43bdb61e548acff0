"""workers.outage: the backoff's schedule, and riding out an outage (pure: no processes)."""

from __future__ import annotations

import pickle
import random

import pytest
import structlog
from structlog.testing import capture_logs

from jobq.errors import StorageError, transient
from workers.outage import MAX_DELAY, Outage, backoff, sleep_unless


def test_backoff_doubles_from_a_tenth_of_a_second_to_five_with_jitter() -> None:
    rng = random.Random(1)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    for failures, ceiling in enumerate(ceilings, start=1):
        delays = [backoff(failures, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not in step
    assert backoff(0, rng) == 0.0 and backoff(10_000, rng) <= MAX_DELAY


def test_only_storage_errors_said_transient_are() -> None:
    assert transient(StorageError("server restarting", transient=True))
    assert not transient(StorageError("permission denied", transient=False))
    assert not transient(StorageError("a directory's disk is full"))  # the directory engine's
    assert not transient(OSError("not ours"))
    err = StorageError("x", transient=True)
    assert transient(pickle.loads(pickle.dumps(err)))  # a child sends it to its supervisor


def test_an_outage_is_logged_once_and_ends_when_the_probe_answers() -> None:
    now = [100.0]
    outage = Outage(structlog.get_logger(), rng=random.Random(0), clock=lambda: now[0])
    answers = [StorageError("still down", transient=True), StorageError("down", transient=True),
               None]
    waits: list[float] = []

    def probe() -> None:
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return False

    with capture_logs() as events:
        assert outage.ride_out(StorageError("gone", transient=True), probe, wait)
    assert [e["event"] for e in events] == ["storage.unreachable", "storage.reconnected"]
    assert events[0]["error"] == "gone" and events[1]["retries"] == 3
    assert events[1]["seconds"] == pytest.approx(sum(waits), abs=1e-3)
    assert len(waits) == 3 and waits[0] <= 0.1 < waits[2] <= 0.4
    assert not outage.active


def test_a_permanent_error_is_raised_and_a_stop_ends_the_wait() -> None:
    outage = Outage(structlog.get_logger())
    denied = StorageError("permission denied")
    with pytest.raises(StorageError, match="permission denied"):
        outage.ride_out(denied, lambda: None, lambda seconds: False)
    with pytest.raises(StorageError, match="permission denied"):  # from the probe
        outage.ride_out(StorageError("down", transient=True),
                        lambda: (_ for _ in ()).throw(denied), lambda seconds: False)
    assert not outage.ride_out(StorageError("down", transient=True), lambda: None,
                               lambda seconds: True)
    assert sleep_unless(60, lambda: True) and not sleep_unless(0.01, lambda: False)
