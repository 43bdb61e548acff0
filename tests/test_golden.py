"""Golden files from every older version load with today's classes, forever.

The files under tests/golden are written once by scripts/make_golden.py and never regenerated; if
one of these tests fails, today's code broke old data, and the fix belongs in the code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from jobq import pickling, record
from jobq.job_record import decode_meta, load_payload
from jobq.payload import JobPayload
from jobq.state import JobState, Status

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_700_000_000.0


def _load(name: str):
    return pickling.loads((GOLDEN / name).read_bytes())


def test_payload_v1_gains_priority_zero():
    """A v1 payload (before priorities) loads with priority 0 and every other field kept."""
    p = _load("payload_v1.pickle")
    assert isinstance(p, JobPayload)
    assert p == JobPayload(job_id="golden-payload-v1", task="operator:add", args=(2, 3), kwargs={},
                           priority=0, max_attempts=3, timeout=30.0, run_at=T0, created_at=T0)


def test_payload_v2_loads_as_is():
    """The current payload version round-trips from its golden file."""
    p = _load("payload_v2.pickle")
    assert (p.job_id, p.priority, p.max_attempts) == ("golden-payload-v2", 7, 5)


def test_state_v1_gains_errors_progress_and_crashes():
    """A v1 state keeps its single error as the error list and gets defaults for new fields."""
    s = _load("state_v1.pickle")
    assert isinstance(s, JobState)
    assert s.status is Status.FAILED and s.attempts == 2 and s.checkpoint == {"step": 7}
    assert s.error == "ValueError: boom" and s.errors == ["ValueError: boom"]
    assert (s.progress, s.crashes, s.run_at, s.cancel_requested) == (0.0, 0, T0, False)


def test_state_v2_gains_no_checkpoint_token():
    """A v2 state loads with no attempt named as the saver of its checkpoint."""
    s = _load("state_v2.pickle")
    assert (s.status, s.result, s.crashes, s.progress) == (Status.SUCCEEDED, 5, 1, 1.0)
    assert (s.checkpoint, s.checkpoint_token) == ({"step": 9}, None)


def test_state_v3_loads_as_is():
    """The current state version round-trips from its golden file."""
    s = _load("state_v3.pickle")
    assert (s.status, s.attempts, s.checkpoint, s.checkpoint_token) == (
        Status.FAILED, 1, {"step": 4}, 2)
    assert pickle.loads(pickle.dumps(s)) == s


def test_golden_pickles_name_only_jobq_classes():
    """Old pickles reference the persisted class and nothing else (so allow-lists admit them);
    a plain success's tuple references none."""
    import pickletools
    for path in GOLDEN.glob("*.pickle"):
        ops = list(pickletools.genops(path.read_bytes()))
        globals_ = [arg for op, arg, _ in ops
                    if op.name in ("SHORT_BINUNICODE", "GLOBAL", "STACK_GLOBAL") and arg
                    and str(arg).startswith("jobq.")]
        if path.name.startswith("plain_success"):
            assert not any(op.name in ("GLOBAL", "STACK_GLOBAL") for op, _, _ in ops)
        else:
            assert globals_ in (["jobq.payload"], ["jobq.state"]), path.name


def test_log_format_1_segment_reads_back():
    """A log segment of record format 1 still verifies and yields both payload versions."""
    data = (GOLDEN / "log_format1_segment.bin").read_bytes()
    pos, payloads = 0, []
    while pos < len(data):
        frame = record.decode(data, pos, key=None, max_body=1 << 20)
        meta, _ = decode_meta(frame.body)
        payloads.append((meta, load_payload(frame.body, pickling.DEFAULT_RULES)))
        pos += frame.size
    assert [(m.job_id, p.priority) for m, p in payloads] == [("golden-payload-v1", 0),
                                                             ("golden-payload-v2", 7)]
    assert pickle.loads(pickle.dumps(payloads[0][1])) == payloads[0][1]


def test_plain_success_v1_loads_as_the_state_it_stands_for():
    """Store schema 7's tuple of a plain success gives back its state, and today's code writes
    the same bytes for that state (jobq.local.snapshots)."""
    from jobq.local import snapshots

    value = _load("plain_success_v1.pickle")
    s = snapshots.from_plain("golden-plain", "operator:add", T0, value)
    assert s == JobState(job_id="golden-plain", task="operator:add", status=Status.SUCCEEDED,
                         attempts=2, progress=1.0, enqueued_at=T0, run_at=T0 + 1,
                         started_at=T0 + 2, finished_at=T0 + 3, updated_at=T0 + 3,
                         cancel_requested=True)
    assert snapshots.snap_of(s, T0 + 3) == snapshots.PLAIN
    kept = snapshots.kept(s, snapshots.PLAIN)
    assert pickling.dumps(kept) == (GOLDEN / "plain_success_v1.pickle").read_bytes()
