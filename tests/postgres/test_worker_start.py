"""A worker started while its PostgreSQL server cannot be reached waits for it (--wait-for-storage).

Real processes: ``jobq worker`` is started on a port where nothing listens yet; a TCP proxy to
the test server then opens on that port, as a server that finishes booting would.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from conftest import child_env, jobq_command

import pg
from jobq import Queue

from .tcp_proxy import TcpProxy


def _through(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port``."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}" if user
                                     else f"127.0.0.1:{port}"))


def _worker(url: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*jobq_command(), "worker", "--burst", "--log-format", "json",
                             "--dir", url, *args], cwd=cwd, env=child_env(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _events(stderr: str) -> list[str]:
    return [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]


def _until_event(proc: subprocess.Popen[str], event: str, timeout: float) -> str:
    """The worker's stderr up to the end of the line of its first ``event`` (read from the
    descriptor itself, so that ``communicate`` reads the rest without losing a byte)."""
    assert proc.stderr is not None
    fd, data = proc.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while event not in _events(data.decode(errors="replace").rpartition("\n")[0]):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no {event} event from the worker within {timeout} s"
                                 f" (exit status {proc.poll()}): {data.decode(errors='replace')}")
        data += chunk
    return data.decode()


def test_a_worker_started_before_its_server_waits_and_then_runs(pg_url: str,
                                                                tmp_path: Path) -> None:
    with Queue(pg_url) as q:
        q.enqueue_call("jobtasks:add", args=(2, 3), job_id="early")
    port = pg.free_port()
    proc = _worker(_through(pg_url, port), tmp_path)
    proxy = None
    try:
        early = _until_event(proc, "storage.unreachable", timeout=60)  # refused, then waiting
        assert proc.poll() is None, proc.communicate()
        target = urlsplit(pg_url)
        proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5432), port=port)
        _, stderr = proc.communicate(timeout=90)
        stderr = early + stderr
    finally:
        proc.kill()
        if proxy is not None:
            proxy.close()
    assert proc.returncode == 0, stderr
    events = _events(stderr)
    assert events.count("storage.unreachable") == 1  # once, however many tries
    assert events.index("storage.unreachable") < events.index("storage.reconnected")
    assert events.index("storage.reconnected") < events.index("worker.started")
    with Queue(pg_url) as q:
        assert q.result("early") == 5


def test_a_worker_gives_up_after_its_wait_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{pg.free_port()}/postgres?queue=never"
    proc = _worker(url, tmp_path, "--wait-for-storage", "1")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("jobq: error: PostgreSQL at 127.0.0.1:") and "Connection refused" in last
    assert last.endswith("(still unreachable after 1 s: --wait-for-storage)")
    assert _events(stderr) == ["storage.unreachable"]


def test_an_error_that_waiting_cannot_fix_fails_at_once(pg_url: str, tmp_path: Path) -> None:
    missing = urlsplit(pg_url)._replace(path="/jobq_no_such_database", query="queue=x")
    proc = _worker(urlunsplit(missing), tmp_path)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "does not exist" in stderr.strip().splitlines()[-1]
    assert "storage.unreachable" not in _events(stderr)  # not retried: no outage logged


def test_no_wait_fails_at_the_first_refusal(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{pg.free_port()}/postgres?queue=never"
    proc = _worker(url, tmp_path, "--wait-for-storage", "0")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Connection refused" in stderr
    assert "still unreachable" not in stderr and "storage.unreachable" not in _events(stderr)
