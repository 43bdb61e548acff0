"""What a reaper asks first on every engine (Engine.holders): the owners of other workers'
running claims, one entry each, with whether a lease of theirs ran out; never the asking
worker's own claims nor its children's, whatever ids share its name's prefix. And the order of
a reaping: claims recorded, then the dead worker's record buried."""

from __future__ import annotations

import time

import pytest
import structlog

from jobq import Queue
from jobq.transitions import succeeded
from workers.reaping import Ended, reap_dead_workers


def _claim(q: Queue, owner: str, n: int = 1, lease: float = 60.0, prefetch: int = 0) -> None:
    assert len(q.engine.settle([], owner, n, lease_seconds=lease, prefetch=prefetch)[1]) \
        == n + prefetch


def test_holders_are_the_other_workers_owners_with_their_expired_leases(q: Queue) -> None:
    q.enqueue_many("jobtasks:add", [(1, 1)] * 10)
    _claim(q, "w")  # the asking worker itself, as claims without a child number are
    _claim(q, "w/1", 2, prefetch=1)
    _claim(q, "w/12")
    _claim(q, "w-2/1", 2)  # ids that share the asking worker's prefix are others
    _claim(q, "wx")
    _claim(q, "v/1", lease=0.2)
    _claim(q, "z/3", lease=0.2)
    time.sleep(0.4)
    q.engine.renew("z", 60)
    assert q.engine.holders("w") == {"w-2/1": False, "wx": False, "v/1": True, "z/3": False}
    assert q.engine.holders("w-2") == {"w": False, "w/1": False, "w/12": False, "wx": False,
                                       "v/1": True, "z/3": False}
    everyone = {h.owner for h in q.engine.held()}
    assert set(q.engine.holders("nobody")) == everyone


def test_no_holders_once_the_claims_ended(q: Queue) -> None:
    q.enqueue_many("jobtasks:add", [(1, 1)] * 2)
    claims = q.engine.settle([], "v/1", 2)[1]
    assert q.engine.holders("w") == {"v/1": False}
    q.engine.settle([(c.job_id, c.token, lambda s, now, _: succeeded(s, None, now))
                     for c in claims], "v/1", 0)
    assert q.engine.holders("w") == {}


def test_a_reaper_reads_the_claims_only_when_it_has_some_to_reap(
        q: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    q.enqueue_many("jobtasks:add", [(1, 1)] * 6)
    hold = q.engine.workers.hold("v")  # a live worker holding claims
    try:
        _claim(q, "v/1", 2)
        _claim(q, "me/1")
        reads = []
        held = q.engine.held
        monkeypatch.setattr(q.engine, "held", lambda *a: reads.append(a) or held(*a))
        ended: list[Ended] = []
        reap_dead_workers(q.engine, "me", 3, ended, structlog.get_logger())
        assert ended == [] and reads == []  # nothing to reap: the claims were not read
        _claim(q, "x/1", 1, prefetch=1)  # a worker that holds no liveness: dead
        reap_dead_workers(q.engine, "me", 3, ended, structlog.get_logger())
        assert len(reads) == 1
        assert sorted((e.job_id, e.extra["reaped_from"]) for e in ended) \
            == sorted((h.job_id, "x") for h in held() if h.owner == "x/1")
        states = q.engine.settle([(e.job_id, e.token, e.change) for e in ended], "me/1", 0)[0]
        assert sorted(s.attempts for s in states if s is not None) == [0, 1]  # one crashed
    finally:
        hold.close()


def test_a_dead_worker_is_shown_reaped_only_once_its_claims_are_recorded(q: Queue) -> None:
    q.enqueue_many("jobtasks:add", [(1, 1)] * 2)
    hold = q.engine.workers.hold("x")
    q.engine.workers.publish({"id": "x", "host": "h", "pid": 1, "started": time.time(),
                              "heartbeat": time.time()})
    _claim(q, "x/1", 2)
    hold.close()  # x died holding two claims
    ended: list[Ended] = []
    seen = []

    def record() -> None:  # what the worker's supervisor does: record them in one settle
        seen.append(({w.id: w.state.value for w in q.workers()}, len(ended)))
        states = q.engine.settle([(e.job_id, e.token, e.change) for e in ended], "me/1", 0)[0]
        assert all(s is not None and s.crashes == 1 for s in states)
        ended.clear()

    reap_dead_workers(q.engine, "me", 3, ended, structlog.get_logger(), record=record)
    assert seen == [({"x": "dead"}, 2)]  # recorded while x was still shown dead, not reaped
    [x] = [w for w in q.workers() if w.id == "x"]
    assert x.state.value == "reaped" and x.reaped_by == "me" and len(x.held) == 2
