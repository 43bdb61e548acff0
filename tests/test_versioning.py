"""Schema versions: written on pickling, migrated step by step, newer ones refused by name."""

from __future__ import annotations

import pickle

import pytest

from jobq.errors import SchemaVersionError
from jobq.payload import JobPayload
from jobq.state import JobState, Status
from jobq.versioning import migrate


def test_getstate_writes_the_schema_version():
    """The pickled state carries SCHEMA_VERSION and the status as a plain string."""
    state = JobState(job_id="j", task="m:f", status=Status.RUNNING).__getstate__()
    assert state["schema"] == JobState.SCHEMA_VERSION and state["status"] == "running"
    assert JobPayload(job_id="j", task="m:f").__getstate__()["schema"] == JobPayload.SCHEMA_VERSION


@pytest.mark.parametrize("cls", [JobPayload, JobState], ids=lambda c: c.__name__)
def test_newer_version_is_refused_naming_both(cls):
    """A state from a future version raises an error that names its version and ours."""
    obj = cls.__new__(cls)
    newer = cls.SCHEMA_VERSION + 1
    with pytest.raises(SchemaVersionError) as info:
        obj.__setstate__({"schema": newer, "job_id": "j"})
    assert f"version {newer}" in str(info.value) and f"version {cls.SCHEMA_VERSION}" in str(info.value)
    assert (info.value.found, info.value.supported) == (newer, cls.SCHEMA_VERSION)


@pytest.mark.parametrize("bad", [None, 0, "2", True, -1], ids=repr)
def test_missing_or_invalid_version_is_refused(bad):
    """A state without a usable schema number is an error, not a guess."""
    with pytest.raises(SchemaVersionError):
        JobPayload.__new__(JobPayload).__setstate__({"schema": bad})


def test_fields_that_do_not_match_the_version_are_refused():
    """A state claiming the current version with missing or extra fields fails loudly."""
    good = JobPayload(job_id="j", task="m:f").__getstate__()
    for broken in ({k: v for k, v in good.items() if k != "priority"}, {**good, "extra": 1}):
        with pytest.raises(SchemaVersionError, match="do not match"):
            JobPayload.__new__(JobPayload).__setstate__(broken)


def test_migrations_run_in_order_one_step_at_a_time():
    """migrate() applies each step once, in order, and stamps each intermediate version."""
    seen = []
    steps = {1: lambda s: seen.append(("1->2", s["schema"])) or {**s, "b": 1},
             2: lambda s: seen.append(("2->3", s["schema"])) or {**s, "c": s["b"] + 1}}
    out = migrate("X", {"schema": 1, "a": 0}, 3, steps)
    assert out == {"schema": 3, "a": 0, "b": 1, "c": 2}
    assert seen == [("1->2", 1), ("2->3", 2)]


def test_frozen_payload_round_trips_through_pickle():
    """Frozen payloads restore through __setstate__ with every field intact."""
    p = JobPayload(job_id="j", task="m:f", args=(1, [2]), kwargs={"k": {3}}, priority=-4,
                   max_attempts=9, timeout=1.5, run_at=2.0, created_at=1.0)
    assert pickle.loads(pickle.dumps(p, protocol=5)) == p


def test_pickled_state_holds_exactly_the_fields_even_with_an_extra_attribute():
    """__getstate__ copies the instance dict when it holds exactly the fields, else picks them."""
    import pickle

    from jobq.state import JobState
    state = JobState(job_id="j", task="m:f")
    object.__setattr__(state, "stray", 1)  # not a field: must not be pickled
    packed = state.__getstate__()
    assert "stray" not in packed and packed["job_id"] == "j"
    assert pickle.loads(pickle.dumps(state)).job_id == "j"


def test_status_of_is_status_by_value():
    from jobq.state import status_of
    assert all(status_of(s.value) is s and status_of(s) is s for s in Status)
    for bad in ("nope", 3, None):
        with pytest.raises(ValueError):
            status_of(bad)


@pytest.mark.parametrize("cls", [JobPayload, JobState], ids=lambda c: c.__name__)
def test_a_current_state_loads_in_any_key_order_and_is_left_as_it_was(cls):
    """The current version's fast path (keys in the order written) and the other orders load the
    same object, unpacked (a status enum), and neither changes the caller's dict."""
    written = cls(job_id="j", task="m:f").__getstate__()
    reordered = dict(reversed(list(written.items())))
    for state in (written, reordered):
        before = dict(state)
        obj = cls.__new__(cls)
        obj.__setstate__(state)
        assert obj == cls(job_id="j", task="m:f") and state == before
        assert list(state) == list(before)
    loaded = pickle.loads(pickle.dumps(JobState(job_id="j", task="m:f")))
    assert loaded.status is Status.QUEUED and "schema" not in vars(loaded)
