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
