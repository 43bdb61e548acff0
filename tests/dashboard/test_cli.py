"""The real ``jobq dashboard`` command: it starts on a free port, serves pages from a real
queue (on every engine), and refuses bad input with one line and a non-zero exit."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from jobq import Queue
from jobq.testing import run_burst

from .serving import Served, run_cli


def test_it_serves_the_queue_on_loopback_read_only(location: str, serve: Callable[..., Served]):
    with Queue(location) as q:
        jid = q.enqueue_call("jobtasks:boom", max_attempts=1)
        q.enqueue("jobtasks:add", 1, 2)
        run_burst(q, max_jobs=1)
    served = serve(location)
    assert served.url.startswith("http://127.0.0.1:")
    code, page = served.get("/")
    assert code == 200 and "read-only" in page and 'data-status="dead"' in page
    code, page = served.get(f"/jobs/{jid}")
    assert code == 200 and "ValueError: boom" in page and 'name="token"' not in page
    assert served.get("/jobs?status=queued")[0] == 200
    code, text = served.get("/metrics")
    assert code == 200 and 'jobq_jobs{status="dead"} 1' in text
    assert served.get("/health") == (200, "ok\n")
    assert served.get("/jobs?status=nope")[0] == 400


def test_a_password_from_the_environment(tmp_path: Path, serve: Callable[..., Served]):
    Queue(tmp_path / "q").close()
    served = serve(str(tmp_path / "q"), "--allow-actions",
                   env={"JOBQ_DASHBOARD_PASSWORD": "pw"})
    assert served.get("/")[0] == 401
    auth = {"Authorization": "Basic " + base64.b64encode(b"me:pw").decode()}
    code, page = served.get("/", headers=auth)
    assert code == 200 and "actions on" in page


def _one_line_error(result, code: int, *words: str) -> None:
    assert result.returncode == code, result
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(word in result.stderr for word in words), result.stderr


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path: Path):
    Queue(tmp_path / "q").close()
    qdir = str(tmp_path / "q")
    _one_line_error(run_cli("--dir", str(tmp_path / "none")), 1, "no queue at")
    assert not (tmp_path / "none").exists()  # and none was made
    _one_line_error(run_cli("--dir", qdir, "--port", "99999"), 2, "not a port")
    _one_line_error(run_cli("--dir", qdir, "--port", "x"), 2, "not a port")
    _one_line_error(run_cli("--dir", qdir, "--host", "0.0.0.0", "--allow-actions",
                            env={"JOBQ_DASHBOARD_PASSWORD": ""}), 1,
                    "JOBQ_DASHBOARD_PASSWORD")
    _one_line_error(run_cli("--dir", qdir, "--host", "203.0.113.7", "--port", "0"), 1,
                    "cannot listen on 203.0.113.7")
    _one_line_error(run_cli("--dir", qdir, "--refresh", "0"), 1, "refresh")


def test_the_port_in_use_is_one_line(tmp_path: Path, serve: Callable[..., Served]):
    Queue(tmp_path / "q").close()
    served = serve(str(tmp_path / "q"))
    port = served.url.rsplit(":", 1)[1]
    _one_line_error(run_cli("--dir", str(tmp_path / "q"), "--port", port), 1, "cannot listen")
