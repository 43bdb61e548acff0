"""jobq's loggers import structlog only when an event is logged, configured as the CLI asked."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import child_env

SCRIPT = """
import sys
import jobq.cli, workers.worker
from jobq.execution import log
jobq.cli.configure_logging(fmt="json", level=20)
assert "structlog" not in sys.modules, "imported before any event"
assert log.bind(worker="w").is_enabled_for(20) and not log.is_enabled_for(10)
assert "structlog" not in sys.modules, "imported to answer is_enabled_for"
log.debug("not.written")
log.bind(worker="w").info("written", n=1)
assert "structlog" in sys.modules
"""


def test_structlog_is_imported_at_the_first_event_with_the_cli_configuration():
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=child_env(), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(e["event"], e["worker"], e["n"], e["level"]) for e in events] == \
        [("written", "w", 1, "info")]


def test_a_batch_of_events_is_written_in_whole_lines_of_at_most_pipe_buf_per_write():
    """Events logged inside batched() go out together, each write whole lines within PIPE_BUF
    (atomic on a pipe shared with other processes); outside, one write per event."""
    import io

    from jobq import _logging

    class Recording(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def write(self, text: str) -> int:
            self.writes.append(text)
            return super().write(text)

    out = Recording()
    writer = _logging.writer_factory(out)()
    lines = [f'{{"event": "job.succeeded", "n": {i}, "pad": "{"x" * (i % 300)}"}}'
             for i in range(100)]
    with _logging.batched():
        for line in lines:
            writer.msg(line)
        assert out.writes == []  # nothing written before the batch ends
    assert out.getvalue().splitlines() == lines
    assert 1 < len(out.writes) < 100
    assert all(w.endswith("\n") and len(w) <= 4096 for w in out.writes)
    writer.msg("single")
    assert out.writes[-1] == "single\n"
