"""An application's task module that configures structlog when imported (tests/test_logging.py):
its events, jobq's included, to stdout through its own processors. Only imported by workers run
as subprocesses: it configures structlog for the whole process."""

from __future__ import annotations

import sys
from typing import Any

import structlog


def _mark(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["configured_by"] = "application"
    return event


structlog.configure(processors=[structlog.processors.add_log_level, _mark,
                                structlog.processors.JSONRenderer()],
                    logger_factory=structlog.WriteLoggerFactory(sys.stdout))


def add(a: int, b: int) -> int:
    return a + b
