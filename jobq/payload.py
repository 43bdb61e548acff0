"""``JobPayload``: what a producer asks to run, as written (pickled) to the log."""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

from . import pickling
from .errors import NotPicklable
from .versioning import SCHEMA_KEY, Migration, Versioned


def _v1_to_v2(state: dict[str, Any]) -> dict[str, Any]:
    # Version 1 had no priorities: every job ran in arrival order, which is priority 0 today.
    state["priority"] = 0
    return state


@dataclass(frozen=True, kw_only=True)
class JobPayload(Versioned):
    """One job as enqueued: the task reference, its arguments and how it should be run.

    Version history: 1 = no ``priority``; 2 = ``priority`` (higher runs first).
    """

    SCHEMA_VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _v1_to_v2}

    job_id: str
    task: str  # "package.module:function"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    timeout: float | None = None  # seconds one attempt may run
    run_at: float = 0.0  # epoch seconds; not before
    created_at: float = 0.0  # epoch seconds


# The pickle of a JobPayload is its class, an empty instance, then BUILD from the state dict. The
# enqueue path writes that directly: the state dict pickled on its own between the constant parts,
# instead of building a frozen dataclass and letting pickle call __getstate__ and look the class up
# again for every job (4.3 µs -> 1 µs a job). The opcodes are the ones pickle.dumps(payload) writes,
# except that the class's strings are not memoised.
_CLASS_AND_INSTANCE = b"".join((
    pickle.PROTO, bytes([pickling.PROTOCOL]),
    pickle.SHORT_BINUNICODE, bytes([len(JobPayload.__module__)]), JobPayload.__module__.encode(),
    pickle.SHORT_BINUNICODE, bytes([len(JobPayload.__qualname__)]),
    JobPayload.__qualname__.encode(),
    pickle.STACK_GLOBAL, pickle.EMPTY_TUPLE, pickle.NEWOBJ,
))
_BUILD_AND_STOP = pickle.BUILD + pickle.STOP
_PROTO_SIZE = 2  # PROTO and its argument, at the start of every protocol 2+ pickle
_CLASS = _CLASS_AND_INSTANCE[_PROTO_SIZE:]
# A pickle under pickle's frame size is written as one frame from its PROTO on: reading a
# stream (pickling.loads' BytesIO), the C unpickler calls read() once a frame, but twice an
# opcode outside one (callgrind, a no-op job's load_payload: 64,007 -> 59,216 instructions).
_FRAME_HEAD = 9  # FRAME and its 8-byte length
_FRAME_OP = pickle.FRAME[0]
_ONE_FRAME = 64 * 1024  # pickle._FRAME_SIZE_TARGET: a pickle shorter is one frame at most
_PROTO_FRAME = pickle.PROTO + bytes([pickling.PROTOCOL]) + pickle.FRAME  # then its length
_framed = struct.Struct("<3sQ").pack  # PROTO, FRAME and the frame's length


def dumps_fields(job_id: str, task: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                 priority: int, max_attempts: int, timeout: float | None, run_at: float,
                 created_at: float) -> bytes:
    """Pickle a JobPayload of these (already validated) fields without building it first.

    Loads exactly as ``pickling.dumps(JobPayload(...))`` does: the enqueue path's pickler.
    """
    # The keys and their order are JobPayload's fields, as Versioned.__getstate__ writes them;
    # tests/test_payload.py checks that the two agree.
    state = {"job_id": job_id, "task": task, "args": args, "kwargs": kwargs,
             "priority": priority, "max_attempts": max_attempts, "timeout": timeout,
             "run_at": run_at, "created_at": created_at, SCHEMA_KEY: JobPayload.SCHEMA_VERSION}
    try:
        data = pickle.dumps(state, protocol=pickling.PROTOCOL)
    except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
        raise NotPicklable(f"cannot pickle JobPayload: {exc}") from exc
    # Without its PROTO and STOP, the state's pickle puts the state dict on the stack.
    if len(data) < _ONE_FRAME:
        ops = _ops(data)
        return b"".join((_framed(_PROTO_FRAME, len(_CLASS) + len(ops) + len(_BUILD_AND_STOP)),
                         _CLASS, ops, _BUILD_AND_STOP))
    # Several frames: the last one then covers BUILD; the class before them is not framed.
    return b"".join((_CLASS_AND_INSTANCE, data[_PROTO_SIZE:-1], _BUILD_AND_STOP))


def _ops(data: bytes) -> bytes:
    """The opcodes of a pickle of one frame at most, without its PROTO, FRAME and STOP."""
    return data[_PROTO_SIZE + _FRAME_HEAD if data[_PROTO_SIZE] == _FRAME_OP else _PROTO_SIZE:-1]


def _pushes(value: object) -> bytes:
    """The opcodes pickle writes to push ``value`` (a str, int, float or None), without its
    PROTO, FRAME, memo or STOP."""
    if type(value) is str:
        return _unicode(value.encode("utf-8", "surrogatepass"))
    return _ops(pickle.dumps(value, protocol=pickling.PROTOCOL))


def _unicode(utf8: bytes) -> bytes:
    """The opcode pickle writes for a str of these UTF-8 bytes."""
    return _unicode_head(len(utf8)) + utf8


def _unicode_head(size: int) -> bytes:
    """The opcode pickle writes for a str of ``size`` UTF-8 bytes, up to those bytes."""
    if size < 256:
        return pickle.SHORT_BINUNICODE + bytes([size])
    return pickle.BINUNICODE + size.to_bytes(4, "little")


class Template:
    """The pickles of JobPayloads that share every field but ``job_id`` and ``args`` and have
    no ``kwargs``: the jobs of one ``enqueue_many`` (or of one group's members).

    The state dict's constant parts are written once; a job's pickle is them around its id and
    its arguments pickled on their own, the only pickling a job then costs. It loads as
    ``dumps_fields``' does, with the same opcodes but for memo and frames (tests/test_payload.py).
    Nothing in the pickle before the arguments is memoised, so the memo indices in their own
    pickle are the ones the whole stream's unpickler assigns; nothing after them refers to the
    memo. A small job's pickle is one frame, as dumps_fields' is.
    """

    def __init__(self, task: str, priority: int, max_attempts: int, timeout: float | None,
                 run_at: float, created_at: float) -> None:
        def item(key: str, value: object) -> bytes:
            return _pushes(key) + _pushes(value)

        self._id_ops: dict[int, bytes] = {}  # an id's opcode up to its bytes, by their number
        # The keys in JobPayload's field order, as dumps_fields writes them.
        self._before_id = b"".join((_CLASS, pickle.EMPTY_DICT,
                                    pickle.MARK, _pushes("job_id")))
        self._before_args = item("task", task) + _pushes("args")
        self._after_args = b"".join((
            _pushes("kwargs"), pickle.EMPTY_DICT,
            item("priority", priority), item("max_attempts", max_attempts),
            item("timeout", timeout), item("run_at", run_at), item("created_at", created_at),
            item(SCHEMA_KEY, JobPayload.SCHEMA_VERSION), pickle.SETITEMS, _BUILD_AND_STOP))
        self._fixed = len(self._before_id) + len(self._before_args) + len(self._after_args)

    def pieces(self, job_id_utf8: bytes, args: tuple[Any, ...]) -> tuple[bytes, ...]:
        """The pickle of the job ``job_id_utf8`` (its id as UTF-8) calling with ``args``, in
        pieces to be joined (with the record's head, by jobq.job_record.Bodies)."""
        try:
            data = pickle.dumps(args, protocol=pickling.PROTOCOL)
        except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
            raise NotPicklable(f"cannot pickle JobPayload: {exc}") from exc
        id_op = self._id_ops.get(len(job_id_utf8))
        if id_op is None:
            id_op = self._id_ops[len(job_id_utf8)] = _unicode_head(len(job_id_utf8))
        # Without its PROTO and STOP, the arguments' pickle puts the tuple on the stack.
        if len(data) < _ONE_FRAME:
            ops = _ops(data)
            size = self._fixed + len(id_op) + len(job_id_utf8) + len(ops)
            return (_framed(_PROTO_FRAME, size), self._before_id, id_op, job_id_utf8,
                    self._before_args, ops, self._after_args)
        # Its frames stay, the last one then covering the byte after them (as dumps_fields'
        # state frame covers BUILD); the pieces around them are not framed.
        return (_CLASS_AND_INSTANCE[:_PROTO_SIZE], self._before_id, id_op, job_id_utf8,
                self._before_args, data[_PROTO_SIZE:-1], self._after_args)
