"""jobq's JSON lines: written without structlog, the very lines of its structlog chain."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import pytest

from conftest import child_env
from jobq._json_lines import CRITICAL, DEBUG, ERROR, INFO, WARNING, BatchingWriter, JsonLogger

STAMP = re.compile(r'"timestamp": "[^"]*"')


def _unstamped(lines: list[str]) -> list[str]:
    """The lines without their time stamps' values (two loggers never write the same one)."""
    return [STAMP.sub('"timestamp": ""', line) for line in lines]


def test_a_batch_of_events_is_written_in_whole_lines_of_at_most_pipe_buf_per_write():
    """Events logged inside batched() go out together, each write whole lines within PIPE_BUF
    (atomic on a pipe shared with other processes); outside, one write per event."""
    import io

    from jobq import _json_lines

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    out = Recording()
    writer = _json_lines.writer_factory(out)()
    lines = [f'{{"event": "job.succeeded", "n": {i}, "pad": "{"x" * (i % 300)}"}}'
             for i in range(100)]
    with _json_lines.batched():
        for line in lines:
            writer.msg(line)
        assert out.writes == []  # nothing written before the batch ends
    assert out.getvalue().splitlines() == lines
    assert 1 < len(out.writes) < 100
    assert all(w.endswith("\n") and len(w) <= 4096 for w in out.writes)
    writer.msg("single")
    assert out.writes[-1] == "single\n"


def test_the_json_encoder_writes_what_json_dumps_with_repr_as_default_writes():
    from jobq import _json_lines

    encode = _json_lines.json_encoder()
    events = [
        {"event": "job.succeeded", "job_id": "18eaf", "attempt": 1, "duration": 3.4e-05,
         "ok": True, "none": None, "nan": float("nan"), "inf": float("-inf")},
        {"event": "x", "nested": {"a": [1, 2.5, "é", {"b": None}]}, 3: "int key", "t": (1, 2)},
        {"event": "odd", "obj": object(), "bytes": b"\x00\xff", "set": {1}},
        {"event": "quotes \" and \\ and \n newline", "ünïcode": "日本"},
    ]
    for event in events:
        assert encode(event) == json.dumps(event, default=repr)


def test_the_iso_time_stamper_writes_utc_with_microseconds():
    import re
    import time
    from datetime import datetime, timezone

    from jobq import _json_lines

    stamper = _json_lines.IsoTimeStamper()
    for _ in range(3):  # the second is cached: a later call must still read the clock
        before = time.time()
        stamp = stamper(None, "info", {})["timestamp"]
        after = time.time()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp), stamp
        at = datetime.fromisoformat(stamp[:-1]).replace(tzinfo=timezone.utc).timestamp()
        assert before - 1e-6 <= at <= after + 1e-6
        time.sleep(0.6)


DIRECT = """
import structlog
import jobq.cli
from jobq._json_lines import JsonLogger, batched
from jobq._logging import Logger, direct_json
from jobq.execution import log_transition
from jobq.state import JobState, Status
jobq.cli.configure_logging(fmt="json", level=20)
states = [JobState(job_id=job_id, task=task, status=Status.SUCCEEDED, attempts=2)
          for job_id, task in (("j1", "jobtasks:add"), ("j\\u00e9\\"\\\\1\\n", "t\\x7f"))]
for context in ({"worker": "w"}, {}, {"worker": "w", "job_id": "the context's, overwritten"}):
    bound = Logger("t").bind(**context)
    bound.info("first")
    real = bound.resolved() if context else structlog.get_logger("t").bind()
    direct = direct_json(real)
    assert type(direct) is JsonLogger, direct
    with batched():
        for logger in (real, direct):
            for state in states:
                for duration in (0.12345678, 3, 1.5e-05, float("nan")):
                    log_transition(state, duration, logger=logger)
            logger.info("odd %s", "args", n=float("nan"), nested={"a": [1, None]})
            logger.warning("warned", n=3)
            assert logger.is_enabled_for(20) and not logger.is_enabled_for(10)
with structlog.testing.capture_logs() as captured:
    assert direct_json(Logger("t").bind(worker="w").resolved()) is not direct
    assert type(direct_json(structlog.get_logger())) is not JsonLogger
    structlog.get_logger().info("captured")
assert [e["event"] for e in captured] == ["captured"], captured
"""


def test_the_direct_json_logger_writes_the_lines_of_its_structlog_chain():
    """A worker child's events through direct_json are the very lines structlog writes (the
    time stamps aside), in the same order; any other chain (capture_logs') keeps its logger."""
    result = subprocess.run([sys.executable, "-c", DIRECT], env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 3 * (1 + 2 * 10)
    assert all(len(STAMP.findall(line)) == 1 for line in lines)
    for n in range(3):  # a context: its first event, then each logger's ten
        plain = _unstamped(lines[21 * n + 1:21 * (n + 1)])
        assert plain[:10] == plain[10:], plain
    events = [json.loads(line) for line in lines]
    assert events[1]["job_id"] == "j1" and events[5]["job_id"] == 'j\u00e9"\\1\n'
    assert events[5]["task"] == "t\x7f" and "\\u00e9" in lines[5]
    assert [e["duration"] for e in events[1:4]] == [0.123457, 3, 1.5e-05]
    assert '"duration": 1.5e-05,' in lines[3] and '"duration": NaN,' in lines[4]
    assert events[43]["job_id"] == "j1"  # the field, not the context's


def _ours_and_structlogs(level: int, context: dict) -> tuple[JsonLogger, object, io.StringIO,
                                                             io.StringIO]:
    """A JsonLogger, and the structlog logger jobq's command line configures (its JSON chain,
    the filtering logger of ``level``, a BatchingWriter), each writing into a StringIO."""
    import structlog

    from jobq._logging import processors

    ours, theirs = io.StringIO(), io.StringIO()
    reference = structlog.make_filtering_bound_logger(level)(
        BatchingWriter(theirs), processors("json"), dict(context))
    return JsonLogger(dict(context), level, BatchingWriter(ours)), reference, ours, theirs


class Odd:
    def __repr__(self) -> str:
        return "<odd \u00e9 \"quoted\">"


ODD_FIELDS = {
    "text": 'ünïcode 日本 "q" \\ \n\t\x00\x7f \ud800', "yes": True, "no": False, "none": None,
    "zero": 0, "big": 2 ** 70, "neg": -1.5, "tiny": 1e-300, "third": 1 / 3, "negzero": -0.0,
    "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"),
    "nested": {"a": [1, 2.5, {"b": None, 3: "int key", "c": (1, "x")}], "é": {}},
    "obj": Odd(), "set": {1}, "bytes": b"\x00\xff", "subclass": type("S", (str,), {})("s"),
}
CONTEXTS = [{}, {"worker": "w", "n": 1},
            {"event": "ctx event", "level": "ctx level", "timestamp": "ctx time", "z": "é"}]


def _log_everything(logger) -> None:
    """Every way jobq and an application call a logger, with odd values."""
    for name in ("debug", "info", "msg", "warning", "warn", "error", "critical", "fatal",
                 "exception"):
        getattr(logger, name)(f"{name}.odd", **ODD_FIELDS)
        getattr(logger, name)(f"{name}.collides", worker="field", n=None, level="call level",
                              timestamp="call time", event_="x")
    logger.info(None, no_event=True)
    logger.info("positional %s and %d", "args", 3, n=1)  # %-style: structlog's own, both
    logger.info("mapping %(a)s", {"a": "é"})
    try:
        raise ValueError("inside except")
    except ValueError as exc:
        logger.exception("caught")
        logger.error("with exc_info", exc_info=exc)
    logger.bind(bound=1, worker="rebound").bind(more=[1]).warning("bound", x=ODD_FIELDS["obj"])
    logger.log(WARNING, "through log", n=2)  # a method jobq does not call: structlog's own


@pytest.mark.parametrize("context", CONTEXTS, ids=["empty", "worker", "colliding"])
def test_the_json_logger_writes_byte_for_byte_what_its_structlog_chain_writes(context):
    """Same keys in the same order (context, the call's fields, event, level, timestamp: a key
    met again keeps its first place), same encoding (repr for what JSON has not)."""
    ours, reference, our_out, their_out = _ours_and_structlogs(DEBUG, context)
    _log_everything(ours)
    _log_everything(reference)
    our_lines, their_lines = our_out.getvalue().splitlines(), their_out.getvalue().splitlines()
    assert len(our_lines) == 2 * 9 + 2 + 1 + 2 + 1 + 1
    assert _unstamped(our_lines) == _unstamped(their_lines)
    assert all(len(STAMP.findall(line)) == 1 for line in our_lines)
    new_ours, new_reference = ours.new(fresh=1), reference.new(fresh=1)
    new_ours.info("new"), new_reference.info("new")
    assert _unstamped(our_out.getvalue().splitlines()[-1:]) == \
        _unstamped(their_out.getvalue().splitlines()[-1:])


@pytest.mark.parametrize("level", [0, DEBUG, INFO, WARNING, ERROR, CRITICAL])
def test_the_json_logger_filters_levels_as_structlogs_filtering_logger(level):
    """Events below the level dropped, whichever method (and succeeded(), a worker's event a
    job); is_enabled_for answers the same."""
    ours, reference, our_out, their_out = _ours_and_structlogs(level, {"worker": "w"})
    _log_everything(ours)
    _log_everything(reference)
    ours.succeeded("j1", "tasks:add", 1, 0.25)
    reference.info("job.succeeded", job_id="j1", task="tasks:add", attempt=1,
                   status="succeeded", duration=0.25)
    assert _unstamped(our_out.getvalue().splitlines()) == \
        _unstamped(their_out.getvalue().splitlines())
    assert ("job.succeeded" in our_out.getvalue()) is (level <= INFO)
    assert [ours.is_enabled_for(n) for n in range(0, 60, 5)] == \
        [reference.is_enabled_for(n) for n in range(0, 60, 5)]


def test_a_json_loggers_events_inside_batched_are_one_write():
    out = io.StringIO()
    writes = []
    out.write = lambda text: writes.append(text) or len(text)  # type: ignore[method-assign]
    logger = JsonLogger({"worker": "w"}, INFO, BatchingWriter(out))
    from jobq._json_lines import batched

    with batched():
        logger.info("a")
        logger.succeeded("j1", "t", 1, 0.5)
        logger.debug("dropped")
    logger.warning("b")
    assert len(writes) == 2 and writes[0].count("\n") == 2 and writes[1].count("\n") == 1
