"""Helpers of the periodic-job tests: a fake schedule clock for worker processes, fire times
as job ids, and the runs the task ``periodic_tasks.noted`` wrote down."""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from jobq import Queue
from jobq.schedule import Schedule, job_id

ANCHOR = datetime(2026, 1, 1, 0, 0, 30, tzinfo=timezone.utc).timestamp()  # 00:00:30 UTC
FAST = 240  # fake seconds per real second: workers then tick every 0.25 s, a fake minute a tick


def fake_clock(monkeypatch: pytest.MonkeyPatch, speed: float, anchor: float = ANCHOR) -> str:
    """Workers started from now on read ``anchor`` now and run ``speed`` times faster."""
    value = f"{anchor},{time.time()},{speed}"
    monkeypatch.setenv("JOBQ_SCHEDULE_CLOCK", value)
    return value


def runs_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("JOBQ_TEST_RUNS", str(path))
    return path


def runs(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def minute(name: str, m: int) -> str:
    """The job id of schedule ``name`` firing ``m`` minutes after 2026-01-01 00:00 UTC."""
    return job_id(name, datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() + 60 * m)


def every_minute(name: str = "s", **options: object) -> Schedule:
    options.setdefault("cron", "* * * * *")
    options.setdefault("misfire", "all")
    options.setdefault("overlap", "allow")
    return Schedule(name=name, task="periodic_tasks:noted",
                    **options)  # type: ignore[arg-type]


def fired(q: Queue, name: str) -> list[str]:
    return sorted(q.engine.ids_starting_with(f"periodic:{name}:", 100_000))


def stop(*workers: object) -> None:
    """SIGTERM each worker process (a graceful stop: running jobs finish), then wait."""
    for w in workers:
        w.proc.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
    for w in workers:
        assert w.wait(timeout=60) == 0  # type: ignore[attr-defined]
