"""The enqueue path's payload pickler: what it writes loads exactly as a pickled JobPayload."""

from __future__ import annotations

import io
import pickle
import pickletools

import pytest

from jobq import job_record, pickling
from jobq.errors import CorruptRecord, NotPicklable
from jobq.payload import JobPayload, Template, dumps_fields

SHARED = ["shared"]
FIELDS = dict(job_id="a" * 32, task="jobtasks:add", args=(1, 2), kwargs={}, priority=0,
              max_attempts=3, timeout=None, run_at=1_700_000_060.5, created_at=1_700_000_000.5)
CASES = {
    "plain": {},
    "kwargs-and-options": dict(kwargs={"width": 100, "name": "é"}, priority=-7, max_attempts=9,
                               timeout=2.5),
    # The same object twice is pickled once and fetched from the memo the second time; strings
    # equal to the state's own keys are the same (interned) objects as those keys.
    "shared-objects": dict(args=(SHARED, SHARED, "args", "task"), kwargs={"job_id": "kwargs"}),
    # Over 64 KiB, pickle splits the stream into several frames.
    "several-frames": dict(args=("x" * 200_000, b"y" * 300_000, list(range(50_000)))),
    "empty-args": dict(args=()),
}


def _fields(case: str) -> dict:
    return {**FIELDS, **CASES[case]}


@pytest.mark.parametrize("case", CASES)
def test_loads_equal_to_the_dataclass_pickle(case):
    """C and pure-Python unpicklers, plain and restricted, load the same JobPayload from both."""
    fields = _fields(case)
    data = dumps_fields(**fields)
    expected = JobPayload(**fields)
    assert pickle.loads(pickling.dumps(expected)) == expected
    assert pickling.loads(data) == expected
    assert pickle._Unpickler(io.BytesIO(data)).load() == expected  # the pure-Python unpickler
    restricted = pickling.PickleRules.build(allowed_modules=["jobtasks"])
    assert pickling.loads(data, restricted) == expected  # pre-scans the opcodes with genops


@pytest.mark.parametrize("case", CASES)
def test_state_matches_getstate(case):
    """The state written is JobPayload.__getstate__(), keys in the same order."""
    fields = _fields(case)
    states = []

    class Capture(pickle.Unpickler):
        def find_class(self, module, name):
            cls = super().find_class(module, name)
            assert cls is JobPayload
            return type("Probe", (), {"__setstate__": lambda self, s: states.append(s)})

    Capture(io.BytesIO(dumps_fields(**fields))).load()
    assert list(states[0].items()) == list(JobPayload(**fields).__getstate__().items())


def test_same_opcodes_as_pickling_the_dataclass():
    """Only framing and memo bookkeeping differ from pickle.dumps(JobPayload(...))."""
    bookkeeping = {"FRAME", "MEMOIZE", "BINGET", "LONG_BINGET"}

    def ops(data: bytes) -> list[tuple[str, object]]:
        return [(op.name, arg) for op, arg, _ in pickletools.genops(data)
                if op.name not in bookkeeping]

    fields = _fields("kwargs-and-options")
    assert ops(dumps_fields(**fields)) == ops(pickling.dumps(JobPayload(**fields)))


def test_unpicklable_argument_raises_not_picklable():
    """An argument pickle cannot handle raises NotPicklable naming the payload, as before."""
    with pytest.raises(NotPicklable, match="cannot pickle JobPayload"):
        dumps_fields(**{**FIELDS, "args": (lambda: None,)})


def test_record_body_matches_encode():
    """encode_fields writes the routing header encode() writes, and the payload loads back."""
    fields = _fields("kwargs-and-options")
    payload = JobPayload(**fields)
    fast = job_record.encode_fields(**fields)
    slow = job_record.encode(payload, pickling.dumps(payload))
    fast_meta, fast_start = job_record.decode_meta(fast)
    slow_meta, slow_start = job_record.decode_meta(slow)
    assert (fast_meta, fast[:fast_start]) == (slow_meta, slow[:slow_start])
    assert job_record.load_payload(fast, pickling.DEFAULT_RULES, payload.job_id) == payload


def _body_and_damaged() -> tuple[bytes, list[bytes]]:
    """A job record's body (job "job-é1"), and that body cut at every length and with each of
    its first 48 bytes (the routing fields and the pickle's start) flipped three ways: the
    inputs the in-place readers must answer as decode_meta does."""
    payload = JobPayload(job_id="job-é1", task="mod:fn", args=(1,))
    body = job_record.encode(payload, pickling.dumps(payload))
    damaged = [body[:n] for n in range(len(body) + 1)]
    damaged += [body[:i] + bytes([body[i] ^ flip]) + body[i + 1:]
                for i in range(48) for flip in (0x01, 0x80, 0xFF)]
    return body, damaged


def test_is_record_of_answers_as_decode_meta_does_for_every_cut_and_flipped_byte():
    """The in-place check says yes exactly when the routing fields decode and name the job."""
    _, damaged = _body_and_damaged()

    def by_decode(data: bytes, job_id: str) -> bool:
        try:
            return job_record.decode_meta(data)[0].job_id == job_id
        except Exception:
            return False

    for data in damaged:
        for job_id in ("job-é1", "job-é", "job-é2"):
            assert job_record.is_record_of(data, job_id) == by_decode(data, job_id)


def test_meta_at_reads_in_place_what_decode_meta_reads_for_every_cut_and_flipped_byte():
    """Read from the middle of a larger buffer, meta_at gives decode_meta's fields, or raises
    its error with its message, whatever the body."""
    body, damaged = _body_and_damaged()
    for data in damaged:
        buf = b"\xff" * 7 + data + body  # bytes on both sides, as in a window of the log
        try:
            expected: object = tuple(job_record.decode_meta(data)[0])
        except CorruptRecord as exc:
            with pytest.raises(CorruptRecord) as raised:
                job_record.meta_at(buf, 7, 7 + len(data))
            assert str(raised.value) == str(exc)
        else:
            assert job_record.meta_at(buf, 7, 7 + len(data)) == expected


def test_load_payload_refuses_a_damaged_body_as_decode_meta_does_for_every_cut_and_flip():
    """load_payload reads the job id and the pickle's start without decode_meta: it raises
    decode_meta's error with its message for any body decode_meta refuses, else it loads."""
    _, damaged = _body_and_damaged()
    for data in damaged:
        try:
            meta, start = job_record.decode_meta(data)
        except CorruptRecord as exc:
            with pytest.raises(CorruptRecord) as raised:
                job_record.load_payload(data, pickling.DEFAULT_RULES)
            assert str(raised.value) == str(exc)
            continue
        try:
            expected: object = pickling.loads(data[start:])
        except Exception as exc:  # noqa: BLE001 - whatever load_payload makes of it too
            expected = type(exc)
        if not isinstance(expected, JobPayload) or expected.job_id != meta.job_id:
            with pytest.raises(Exception):
                job_record.load_payload(data, pickling.DEFAULT_RULES)
        else:
            assert job_record.load_payload(data, pickling.DEFAULT_RULES) == expected


# Template: the jobs of one call share all but id and args, and have no kwargs.
TEMPLATE_CASES = {name: case for name, case in CASES.items() if not case.get("kwargs")}
TEMPLATE_CASES["options"] = dict(priority=-7, max_attempts=9, timeout=2.5)
TEMPLATE_CASES["big-numbers"] = dict(priority=2**70, max_attempts=70_000)
TEMPLATE_CASES["long-unicode-id"] = dict(job_id="é" * 200, task="jobtasks:" + "a" * 300)
TEMPLATE_CASES["one-frame-at-the-limit"] = dict(args=("x" * 65_500,))
TEMPLATE_CASES["one-frame"] = dict(args=("x" * 60_000,))


def _template_pickle(fields: dict) -> bytes:
    template = Template(fields["task"], fields["priority"], fields["max_attempts"],
                        fields["timeout"], fields["run_at"], fields["created_at"])
    return b"".join(template.pieces(fields["job_id"].encode(), fields["args"]))


@pytest.mark.parametrize("case", TEMPLATE_CASES)
def test_template_loads_as_dumps_fields_does(case):
    """Every unpickler, plain and restricted, loads the JobPayload dumps_fields writes, with
    the same opcodes but for framing and memo bookkeeping, its state's keys in order."""
    fields = {**FIELDS, **TEMPLATE_CASES[case]}
    data = _template_pickle(fields)
    expected = JobPayload(**fields)
    assert pickling.loads(data) == expected
    assert pickle._Unpickler(io.BytesIO(data)).load() == expected
    restricted = pickling.PickleRules.build(allowed_modules=["jobtasks"])
    assert pickling.loads(data, restricted) == expected
    bookkeeping = {"FRAME", "MEMOIZE", "BINGET", "LONG_BINGET"}

    def ops(data: bytes) -> list[tuple[str, object]]:
        return [(op.name, arg) for op, arg, _ in pickletools.genops(data)
                if op.name not in bookkeeping]

    assert ops(data) == ops(dumps_fields(**fields))
    states = []

    class Capture(pickle.Unpickler):
        def find_class(self, module, name):
            return type("Probe", (), {"__setstate__": lambda self, s: states.append(s)})

    Capture(io.BytesIO(data)).load()
    assert list(states[0].items()) == list(expected.__getstate__().items())


def test_template_keeps_shared_arguments_shared():
    """An object twice in the arguments is one object after loading (the memo of the
    arguments' own pickle is the whole stream's)."""
    fields = {**FIELDS, "args": (SHARED, SHARED, "args", "args")}
    loaded = pickling.loads(_template_pickle(fields))
    assert loaded.args[0] is loaded.args[1] and loaded.args == fields["args"]


def test_template_bodies_match_encode_fields():
    """Bodies writes encode_fields' routing head, for ids of every length it caches."""
    fields = {**FIELDS, "job_id": "a"}
    bodies = job_record.Bodies(fields["task"], fields["priority"], fields["max_attempts"],
                               fields["timeout"], fields["run_at"], fields["created_at"])
    for job_id in ("a" * 32, "b" * 32, "c", "é" * 40):
        fields["job_id"] = job_id
        fast = bodies.body(job_id, fields["args"])
        slow = job_record.encode_fields(**fields)
        assert job_record.decode_meta(fast) == job_record.decode_meta(slow)
        assert fast[:job_record.decode_meta(fast)[1]] == slow[:job_record.decode_meta(slow)[1]]
        assert job_record.load_payload(fast, pickling.DEFAULT_RULES, job_id) == JobPayload(
            **fields)


def test_template_unpicklable_argument_raises_not_picklable():
    with pytest.raises(NotPicklable, match="cannot pickle JobPayload"):
        _template_pickle({**FIELDS, "args": (lambda: None,)})


@pytest.mark.parametrize("case", ["plain", "empty-args", "one-frame"])
@pytest.mark.parametrize("maker", ["template", "dumps_fields"])
def test_pickle_of_a_small_job_is_one_frame(case, maker):
    """Under pickle's frame size the whole pickle after PROTO is one frame: the C unpickler
    reading a stream then calls read() once, not twice an opcode (a worker loads every job)."""
    fields = {**FIELDS, **TEMPLATE_CASES[case]}
    data = _template_pickle(fields) if maker == "template" else dumps_fields(**fields)
    ops = list(pickletools.genops(data))
    assert [op.name for op, _, _ in ops[:2]] == ["PROTO", "FRAME"]
    assert ops[1][1] == len(data) - 11  # PROTO 2 bytes, FRAME 1 + 8
    assert [op.name for op, _, _ in ops].count("FRAME") == 1
