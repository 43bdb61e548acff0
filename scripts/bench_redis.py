"""A redis-server for the benchmarks that compare jobq with RQ (scripts/bench_peers.py): found
on this machine (or installed with apt-get), and started privately with an append-only file.

Split from bench_peers.py, which was two concepts in one file.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench_venv import run as _run


def _redis_works(binary: str) -> str | None:
    """The binary's version line, or None when it does not run here."""
    try:
        return _run([binary, "--version"], timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def find_redis(allow_apt: bool, fallback: Path, fallback_how: str) -> tuple[str | None, str]:
    """A runnable redis-server and how it was found, or None and why not: the one on PATH,
    else ``fallback`` (``fallback_how`` says where it came from), else apt-get's as root."""
    candidates = [(shutil.which("redis-server"), "on PATH"), (str(fallback), fallback_how)]
    for binary, how in candidates:
        if binary and Path(binary).exists() and (version := _redis_works(binary)):
            return binary, f"{binary} ({how}): {version}"
    if not allow_apt:
        return None, "no redis-server on PATH or in the peers venv, and --no-apt was given"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "no redis-server on PATH or in the peers venv, and no apt-get as root"
    print("installing redis-server with apt-get...", file=sys.stderr)
    try:
        _run(["apt-get", "install", "-y", "--no-install-recommends", "redis-server"], timeout=600)
    except subprocess.CalledProcessError as exc:
        return None, f"apt-get install redis-server failed: {exc.stderr.strip()[-200:]}"
    binary = shutil.which("redis-server")
    version = binary and _redis_works(binary)
    if not (binary and version):
        return None, "apt-get installed redis-server, but it does not run"
    return binary, f"{binary} (installed with apt-get): {version}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(binary: str, directory: Path, appendfsync: str) -> Iterator[str]:
    """A private redis on 127.0.0.1 with an append-only file; yields its URL, then stops it."""
    directory.mkdir(parents=True)
    port = _free_port()
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
           "--appendonly", "yes", "--appendfsync", appendfsync, "--save", "",
           "--daemonize", "no", "--logfile", str(directory / "redis.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {directory / 'redis.log'}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
