"""Driving the dashboard in tests: its WSGI app called as a server would, and the real
``jobq dashboard`` command in a child process on a free port."""

from __future__ import annotations

import io
import re
import selectors
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

from conftest import child_env, jobq_command


class Reply:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.code = int(status.split()[0])
        self.headers = {k.lower(): v for k, v in headers}
        self.text = body.decode("utf-8")


def call(app: Any, path: str, *, method: str = "GET", form: str = "",
         headers: dict[str, str] | None = None) -> Reply:
    """One request to a WSGI app, as wsgiref would make it (PATH_INFO percent-decoded)."""
    from urllib.parse import unquote_to_bytes
    raw_path, _, query = path.partition("?")
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "QUERY_STRING": query,
                               "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
                               "HTTP_HOST": "127.0.0.1:8181"}
    data = form.encode()
    environ.update({"CONTENT_LENGTH": str(len(data)), "wsgi.input": io.BytesIO(data),
                    "CONTENT_TYPE": "application/x-www-form-urlencoded"})
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    setup_testing_defaults(environ)
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got.update(status=status, headers=headers)

    body = b"".join(app(environ, start_response))
    return Reply(got["status"], got["headers"], body)


def token_in(text: str) -> str:
    found = re.search(r'name="token" value="([^"]+)"', text)
    assert found, "no action form on the page"
    return found.group(1)


class Served:
    """A running ``jobq dashboard``: its address, and its exit when stopped."""

    def __init__(self, location: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [*jobq_command(), "dashboard", "--dir", location, "--port", "0", *args],
            env={**child_env(), **(env or {})}, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        line = self._first_line(30)
        found = re.search(r"at (http://\S+/) ", line)
        assert found, f"no address in {line!r}; stderr: {self.proc.stderr.read()}"
        self.url = found.group(1).rstrip("/")

    def _first_line(self, timeout: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(0.1):
                return self.proc.stdout.readline()
            if self.proc.poll() is not None:
                break
        raise AssertionError(f"jobq dashboard did not start: {self.proc.stderr.read()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=30)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*jobq_command(), "dashboard", *args], text=True, capture_output=True,
                          env={**child_env(), **(env or {})}, timeout=60)

