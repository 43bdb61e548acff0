"""Shared fixtures: a fresh queue per test, and child processes that are always reaped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobq import Queue

TESTS_DIR = Path(__file__).resolve().parent


def child_env() -> dict[str, str]:
    """Environment for child interpreters: they can import jobq and tests/jobtasks.py."""
    env = dict(os.environ)
    root = str(TESTS_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS_DIR), root,
                                                    env.get("PYTHONPATH")) if p)
    return env


class Children:
    """Starts Python children and guarantees each is reaped, killed if it outlives the test."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, code: str, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", code, *args], env=child_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    def run(self, code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = self.start(code, *args)
        out, err = proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    try:
        yield kids
    finally:
        kids.reap()


@pytest.fixture
def qpath(tmp_path: Path) -> Path:
    return tmp_path / "queue"


@pytest.fixture
def queue(qpath: Path) -> Iterator[Queue]:
    with Queue(qpath) as q:
        yield q


@pytest.fixture(autouse=True)
def _tasks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))
