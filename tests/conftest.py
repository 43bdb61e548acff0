"""Shared fixtures: a fresh queue per test, child processes that are always reaped, and
PostgreSQL (a fresh database per session; a private cluster for tests that crash the server)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pg
from jobq import Queue

TESTS_DIR = Path(__file__).resolve().parent


_PYCACHE = pytest.StashKey[str]()  # this session's bytecode directory, if it made one


def pytest_configure(config: pytest.Config) -> None:
    """Let the suite's child interpreters cache their bytecode, outside the checkout.

    With PYTHONDONTWRITEBYTECODE set (the CI machine sets it) every worker, child and CLI run
    the tests start compiled jobq again from source (~1 min of a 9 min run). They write
    it under a directory of this session instead (PYTHONPYCACHEPREFIX, removed at the end), so
    the checkout stays as clean as the setting wanted. A prefix of one's own is left alone."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    prefix = tempfile.mkdtemp(prefix="jobq-tests-pycache.")
    config.stash[_PYCACHE] = prefix
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    del os.environ["PYTHONDONTWRITEBYTECODE"]


def pytest_unconfigure(config: pytest.Config) -> None:
    prefix = config.stash.get(_PYCACHE, None)
    if prefix is not None:
        shutil.rmtree(prefix, ignore_errors=True)


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


@pytest.fixture
def golden_store(tmp_path: Path) -> Callable[[int], Path]:
    """``golden_store(5)``: a copy of the golden queue directory of that store schema
    (golden/queue_store5.md says what is in it), checked to be of it and not opened yet, where
    an upgrade test starts."""

    def copy(schema: int) -> Path:
        root = tmp_path / "q"
        shutil.copytree(TESTS_DIR / "golden" / f"queue_store{schema}", root)
        with contextlib.closing(sqlite3.connect(root / "state.sqlite3")) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == schema
        return root

    return copy


ENGINES = ["local", "postgres"]


@pytest.fixture(params=ENGINES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a fresh queue lives, once per engine (the contract suite, tests/contract/): a
    directory for the embedded engine, a named queue in the session's PostgreSQL database."""
    if request.param == "local":
        return str(tmp_path / "queue")
    import psycopg
    d = psycopg.conninfo.conninfo_to_dict(request.getfixturevalue("pg_engine_dsn"))
    return (f"postgresql://{d.get('user', 'postgres')}@{d['host']}:{d.get('port', 5432)}"
            f"/{d['dbname']}?queue=t{uuid.uuid4().hex[:12]}")


@pytest.fixture
def q(location: str) -> Iterator[Queue]:
    with Queue(location) as queue:
        yield queue


@pytest.fixture(autouse=True)
def _tasks_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS_DIR))


def jobq_command() -> list[str]:
    """The installed ``jobq`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "jobq"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jobq.cli"]


class WorkerProcess:
    """A real ``jobq worker`` in its own session, so a test can kill it with its children."""

    def __init__(self, queue_dir: str, *args: str, log_path: Path,
                 command: list[str] | None = None) -> None:
        """``command`` replaces ``jobq worker --dir queue_dir`` (a script that logs JSON events
        to stderr, as the command does)."""
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            command or [*jobq_command(), "--log-format", "json", "--log-level", "debug",
                        "worker", "--dir", queue_dir, *args],
            env=child_env(), stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str | None = None) -> list[dict]:
        """Every JSON event this worker wrote so far (optionally only those named ``name``)."""
        import json
        found = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                event = json.loads(line)
                if name is None or event["event"] == name:
                    found.append(event)
        return found

    def kill_all(self) -> None:
        """SIGKILL the supervisor and all its children at once (as a power cut would)."""
        import signal
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.kill_all()
        self._log.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes; every one is killed and reaped after the test."""
    started: list[WorkerProcess] = []

    def start(queue_dir: str, *args: str) -> WorkerProcess:
        w = WorkerProcess(str(queue_dir), *args, log_path=tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    try:
        yield start
    finally:
        for w in started:
            w.close()


# The long versions of the torture tests: an hour at most each, so not in every run; CI runs each
# one's bounded version (the test above it) on every change.
SOAK_ONLY = pytest.mark.skipif(
    os.environ.get("JOBQ_SOAK", "0") in ("", "0"),
    reason="the hour-long soak version; CI runs the bounded test above it (JOBQ_SOAK=1 runs this)")


@pytest.fixture
def seed() -> int:
    """A torture's chaos seed: $JOBQ_TORTURE_SEED, else a fresh random one (printed with the
    figures, so a failing run can be repeated)."""
    given = os.environ.get("JOBQ_TORTURE_SEED")
    return int(given) if given else int.from_bytes(os.urandom(4), "big")


def wait_until(predicate: Callable[[], object], timeout: float = 30, interval: float = 0.01) -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


# -- PostgreSQL (see tests/pg.py) -------------------------------------------------------------


@contextlib.contextmanager
def _fail_without_postgres() -> Iterator[None]:
    """A missing server fails the test with pg's one-line hint: never a skip."""
    try:
        yield
    except pg.PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server]:
    """The server the session's PostgreSQL tests use (JOBQ_TEST_PG_DSN, else 127.0.0.1:5432,
    else a private cluster when nothing listens there)."""
    with _fail_without_postgres(), pg.open_server() as server:
        yield server


@pytest.fixture(scope="session")
def pg_dsn(pg_server: pg.Server) -> Iterator[str]:
    """DSN of a database created for this session (``jobq_test_<pid>_<random>``), dropped at
    its end. Tests share it: each uses its own tables or schema."""
    with _fail_without_postgres(), pg.fresh_database(pg_server.dsn) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def _pg_private_cluster() -> Iterator[pg.Cluster]:
    with _fail_without_postgres(), pg.private_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_engine_dsn(pg_server: pg.Server) -> Iterator[str]:
    """A database for queues' tables, made for the session (the shared ``pg_dsn`` one is
    expected empty by the tests of the test infrastructure)."""
    with _fail_without_postgres(), pg.fresh_database(pg_server.dsn,
                                                     prefix="jobq_test_engine") as dsn:
        yield dsn


@pytest.fixture
def pg_cluster(_pg_private_cluster: pg.Cluster) -> pg.Cluster:
    """A private cluster that the test may stop, crash and restart (never the shared server).
    One per session; it is running when the test starts, whatever the last test left."""
    with _fail_without_postgres():
        if not _pg_private_cluster.running():
            _pg_private_cluster.start()
    return _pg_private_cluster
