"""The jobq console script, run for real in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _jobq() -> list[str]:
    script = Path(sys.executable).parent / "jobq"
    if script.exists():
        return [str(script)]
    found = shutil.which("jobq")
    return [found] if found else [sys.executable, "-m", "jobq.cli"]


def _run(*args: str, cwd: Path, env_home: str | None = None) -> subprocess.CompletedProcess[str]:
    import os
    env = {k: v for k, v in os.environ.items() if k != "JOBQ_HOME"}
    if env_home:
        env["JOBQ_HOME"] = env_home
    return subprocess.run([*_jobq(), *args], cwd=cwd, env=env, text=True, capture_output=True,
                          timeout=120)


def test_demo_runs_on_the_default_directory(tmp_path):
    """`jobq demo` in an empty directory uses ./.jobq, resumes a job and exits 0."""
    done = _run("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "resumed from its checkpoint at step 10 of 20" in done.stdout
    assert "Demo finished: every job succeeded." in done.stdout
    assert done.stderr == ""
    assert (tmp_path / ".jobq" / "jobq.json").exists()


def test_demo_honours_jobq_home_and_dir(tmp_path):
    """$JOBQ_HOME and --dir choose the queue directory."""
    assert _run("demo", cwd=tmp_path, env_home=str(tmp_path / "home")).returncode == 0
    assert (tmp_path / "home" / "jobq.json").exists()
    assert _run("demo", "--dir", str(tmp_path / "explicit"), cwd=tmp_path).returncode == 0
    assert (tmp_path / "explicit" / "jobq.json").exists()


@pytest.mark.parametrize("args,code,message", [
    (("demo", "--dir", "/etc/passwd"), 1, "jobq: error: /etc/passwd exists and is not a directory"),
    (("demo", "--bogus"), 2, "unrecognized arguments"),
    ((), 2, "required"),
], ids=["file-as-dir", "unknown-flag", "no-command"])
def test_errors_are_one_line_and_non_zero(tmp_path, args, code, message):
    """User mistakes print one clear line on stderr, no traceback, and exit non-zero."""
    done = _run(*args, cwd=tmp_path)
    assert done.returncode == code
    assert message in done.stderr and "Traceback" not in done.stderr
