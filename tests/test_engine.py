"""The seam itself: every engine has every method of ``jobq.engine.Engine``, with the same
parameters, so that nothing above the seam needs to know which engine it talks to."""

from __future__ import annotations

import inspect

from jobq import engine as seam
from jobq import Queue


def _members(cls: type) -> dict[str, object]:
    """Public members of a protocol and of the protocols it is drawn from (Engine's parts)."""
    found: dict[str, object] = {}
    for part in reversed(_parts(cls)):
        found.update((name, member) for name, member in vars(part).items()
                     if not name.startswith("_"))
    return found


def _parts(cls: type) -> list[type]:
    return [part for part in cls.__mro__ if part.__module__.startswith("jobq.engine")]


def test_the_engine_protocol_is_drawn_from_its_parts():
    """Every part of the seam is a protocol checked below: none is left out of the check."""
    names = {part.__name__ for part in _parts(seam.Engine)}
    assert names == {"Engine", "Workflows", "Retention", "Monitoring", "Operating"}
    assert {"keep_for", "open_group", "totals", "purge_jobs", "settle"} <= set(_members(seam.Engine))


def test_an_engine_has_every_method_and_attribute_of_the_protocol(q: Queue):
    """Run once per engine (the ``q`` fixture): the same names and parameters as the seam."""
    engine = q.engine
    name_of = type(engine).__name__
    for name, member in _members(seam.Engine).items():
        assert hasattr(engine, name), f"{name_of} has no {name}"
        if inspect.isfunction(member):
            want = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
            have = [(p.name, p.kind)
                    for p in inspect.signature(getattr(type(engine), name)).parameters.values()]
            assert have[:len(want)] == want, f"{name_of}.{name}{have} is not {want}"
    for name in (n for part in _parts(seam.Engine) for n in inspect.get_annotations(part)):
        assert hasattr(engine, name), f"{name_of} has no attribute {name}"


def test_a_claim_pickles_small_and_whole():
    import pickle

    from jobq.state import JobState, Status
    state = JobState(job_id="j", task="m:f", status=Status.RUNNING, attempts=2, progress=0.5,
                     checkpoint={"row": 7})
    claim = seam.Claim("j", 3, state, ref=("anything", 1))
    copy = pickle.loads(pickle.dumps(claim))
    assert (copy.job_id, copy.token, copy.ref, copy.state.checkpoint, copy.state.attempts) == \
        ("j", 3, ("anything", 1), {"row": 7}, 2)


def test_owners_name_the_worker_and_its_child():
    assert seam.owner_of("host-1-ab", 0) == "host-1-ab"
    assert seam.owner_of("host-1-ab", 3) == "host-1-ab/3"
    assert seam.worker_of("host-1-ab/3") == seam.worker_of("host-1-ab") == "host-1-ab"


def test_an_engine_s_wakeups_have_every_method_of_the_protocol(q: Queue):
    """Run once per engine: what a worker's supervisor listens to, whatever the engine."""
    import structlog

    wakeups = q.engine.wakeups(logger=structlog.get_logger())
    try:
        for name in _members(seam.Wakeups):
            assert callable(getattr(wakeups, name)), f"{type(wakeups).__name__} has no {name}"
        fd = wakeups.fileno()
        assert fd is None or isinstance(fd, int)
        assert wakeups.heard() in (True, False)
    finally:
        wakeups.close()


def test_a_queue_directory_is_polled_every_poll_interval(queue: Queue):
    """Asking a queue directory for ready jobs is a local read: its idle workers keep polling."""
    assert queue.engine.idle_wait(0.02, 30.0) == 0.02
    assert queue.engine.wakeups(logger=None).fileno() is None
