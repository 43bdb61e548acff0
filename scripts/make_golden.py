"""Write the golden pickles and log bytes that tests/test_golden.py loads forever.

Every schema version of every persisted class gets one golden file, written once, by the code of
its time, and never rewritten: a golden that changes proves nothing about old data. This script
only writes files that are missing, so run it after bumping a SCHEMA_VERSION to add the new
version's golden; the old ones stay as they are.

Version 1 of JobPayload and JobState predates this repository's first release (the v1 -> v2 step is
the migration path issue 2 asked for); their goldens are built here from the v1 field lists,
pickled exactly as v1 code pickled them: the class reference, then a state dict carrying
``schema: 1``.

    python scripts/make_golden.py            # writes any missing files under tests/golden/
"""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import sys
from typing import Any

from jobq import job_record, record
from jobq.payload import JobPayload
from jobq.state import JobState, Status

GOLDEN = os.path.join(os.path.dirname(__file__), os.pardir, "tests", "golden")
T0 = 1_700_000_000.0  # fixed times, so the files are reproducible


class _AsVersion:
    """An instance of ``cls`` to be pickled with a hand-written (older) state dict."""

    def __init__(self, cls: type, state: dict[str, Any]) -> None:
        self.cls, self.state = cls, state


def dumps(obj: Any) -> bytes:
    """Pickle like the code of the object's version did: NEWOBJ of the class, then its state."""
    if not isinstance(obj, _AsVersion):
        return pickle.dumps(obj, protocol=5)
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=5)
    pickler.dispatch_table = {obj.cls: lambda _: (copyreg.__newobj__, (obj.cls,), obj.state)}
    pickler.dump(obj.cls.__new__(obj.cls))
    return buf.getvalue()


def payload_v1() -> _AsVersion:
    return _AsVersion(JobPayload, {
        "schema": 1, "job_id": "golden-payload-v1", "task": "operator:add", "args": (2, 3),
        "kwargs": {}, "max_attempts": 3, "timeout": 30.0, "run_at": T0, "created_at": T0})


def payload_v2() -> JobPayload:
    assert JobPayload.SCHEMA_VERSION == 2
    return JobPayload(job_id="golden-payload-v2", task="operator:add", args=(2, 3), kwargs={},
                      priority=7, max_attempts=5, timeout=30.0, run_at=T0, created_at=T0)


def state_v1() -> _AsVersion:
    return _AsVersion(JobState, {
        "schema": 1, "job_id": "golden-state-v1", "task": "operator:add", "status": "failed",
        "attempts": 2, "checkpoint": {"step": 7}, "result": None, "error": "ValueError: boom",
        "enqueued_at": T0, "started_at": T0 + 1, "finished_at": None, "updated_at": T0 + 2})


def state_v2() -> _AsVersion:
    return _AsVersion(JobState, {  # in the order v2 code wrote it, so the bytes are the same
        "job_id": "golden-state-v2", "task": "operator:add", "status": "succeeded",
        "attempts": 2, "crashes": 1, "progress": 1.0, "checkpoint": {"step": 9}, "result": 5,
        "error": "ValueError: boom", "errors": ["ValueError: boom"], "enqueued_at": T0,
        "run_at": T0, "started_at": T0 + 1, "finished_at": T0 + 3, "updated_at": T0 + 3,
        "cancel_requested": False, "schema": 2})


def state_v3() -> JobState:
    assert JobState.SCHEMA_VERSION == 3
    return JobState(job_id="golden-state-v3", task="operator:add", status=Status.FAILED,
                    attempts=1, crashes=0, progress=0.5, checkpoint={"step": 4}, result=None,
                    error="attempt 2 interrupted after saving a checkpoint (not charged): killed",
                    errors=["attempt 2 interrupted after saving a checkpoint (not charged): killed"],
                    enqueued_at=T0, run_at=T0 + 2, started_at=T0 + 1, finished_at=None,
                    updated_at=T0 + 2, cancel_requested=False, checkpoint_token=2)


def plain_success_v1() -> tuple[object, ...]:
    """Store schema 7's compact record of a plain success (jobq.local.snapshots.kept), in the
    directory engine's shelf in place of a whole JobState."""
    from jobq.local import snapshots

    state = JobState(job_id="golden-plain", task="operator:add", status=Status.SUCCEEDED,
                     attempts=2, progress=1.0, enqueued_at=T0, run_at=T0 + 1, started_at=T0 + 2,
                     finished_at=T0 + 3, updated_at=T0 + 3, cancel_requested=True)
    assert snapshots.snap_of(state, T0 + 3) == snapshots.PLAIN
    return snapshots.kept(state, snapshots.PLAIN)


def log_segment_v1() -> bytes:
    """Log record format 1: two job records, one unsigned, as the first segment file holds them."""
    records = []
    for obj, job_id, priority in ((payload_v1(), "golden-payload-v1", 0),
                                  (payload_v2(), "golden-payload-v2", 7)):
        pickled = dumps(obj)
        meta = JobPayload(job_id=job_id, task="operator:add", priority=priority, max_attempts=3,
                          run_at=T0, created_at=T0)
        records.append(record.encode(record.KIND_JOB, job_record.encode(meta, pickled)))
    return b"".join(records)


FILES = {
    "payload_v1.pickle": lambda: dumps(payload_v1()),
    "payload_v2.pickle": lambda: dumps(payload_v2()),
    "state_v1.pickle": lambda: dumps(state_v1()),
    "state_v2.pickle": lambda: dumps(state_v2()),
    "state_v3.pickle": lambda: dumps(state_v3()),
    "plain_success_v1.pickle": lambda: dumps(plain_success_v1()),
    "log_format1_segment.bin": log_segment_v1,
}


def main() -> int:
    os.makedirs(GOLDEN, exist_ok=True)
    for name, make in FILES.items():
        path = os.path.join(GOLDEN, name)
        if os.path.exists(path):
            print(f"kept    {name}")
            continue
        data = make()  # before opening: a failure must not leave an empty golden that is then "kept"
        with open(path, "xb") as f:
            f.write(data)
        print(f"wrote   {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
