"""PostgreSQL for the tests: the machine's server, or a private cluster when none listens.

Tests that need a database get a fresh one for the session (``jobq_test_<pid>_<random>``,
dropped at the end) on the server named by ``JOBQ_TEST_PG_DSN`` (a DSN of a database that the
tests may connect to in order to create others), by default the machine's server at
127.0.0.1:5432 (trust auth). When nothing listens there but PostgreSQL is installed, a private
cluster is made in a temporary directory and stopped at the end; when PostgreSQL is not installed
the tests fail, naming what to install: a suite that skips them would pass without testing them.

Tests that kill or restart the server always get a private ``Cluster``, never the shared server.
As root, a cluster runs as an unprivileged user (``postgres``, else ``nobody``): PostgreSQL
refuses to run as root.

psycopg is imported inside the functions that use it, so that the tests which need no
PostgreSQL still run where psycopg is not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_DSN = "JOBQ_TEST_PG_DSN"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
INSTALL_HINT = ("PostgreSQL is not installed (no initdb/pg_ctl on PATH or under"
                " /usr/lib/postgresql/*/bin): apt install postgresql (Debian/Ubuntu) or"
                " brew install postgresql (macOS), or set JOBQ_TEST_PG_DSN to a server")
PSYCOPG_HINT = "psycopg is not installed: pip install 'psycopg[binary]' (the test extra has it)"
SEARCH_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin")
START_TIMEOUT = 60  # seconds for initdb, and for pg_ctl to see the server accept connections
TEST_DB = re.compile(r"jobq_test_\d+_[0-9a-f]+\Z")


class PostgresUnavailable(Exception):
    """No server to test against and no way to start one; the message says what to do."""


# -- finding a server ---------------------------------------------------------------------------


def psycopg() -> Any:
    """The psycopg module, or PostgresUnavailable saying how to install it."""
    try:
        import psycopg as module
    except ImportError as exc:
        raise PostgresUnavailable(PSYCOPG_HINT) from exc
    return module


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path))


def find_bindir(search: Sequence[str] | None = None) -> Path | None:
    """The directory of PostgreSQL's server programs (initdb, pg_ctl, postgres), or None.

    ``search`` lists directories to look in (the default: PATH, then the usual install places,
    newest version first). A pg_ctl on PATH is often a symlink (Debian's /usr/local/bin): the
    directory of its target is the one that holds ``postgres`` too.
    """
    if search is None:
        found = shutil.which("pg_ctl")
        places = [str(Path(found).resolve().parent)] if found else []
        for pattern in SEARCH_GLOBS:
            places += sorted(glob.glob(pattern), key=_version_key, reverse=True)
        search = places
    for place in search:
        directory = Path(place)
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and user as ``dsn``, another database."""
    conninfo = psycopg().conninfo
    return str(conninfo.make_conninfo(dsn, dbname=dbname))


# -- a private cluster ------------------------------------------------------------------------


def _server_user() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise PostgresUnavailable("running as root, and neither a 'postgres' nor a 'nobody' user"
                              " exists to run a private PostgreSQL cluster as")


class Cluster:
    """A PostgreSQL cluster of our own in a temporary directory: initdb, start, stop, restart.

    It listens on 127.0.0.1 at a free port and on a unix socket in its directory, with trust
    auth for the superuser ``postgres``. ``stop("immediate")`` is a server crash (no shutdown
    checkpoint: the next start runs crash recovery); the cluster keeps its port across restarts.
    """

    def __init__(self, bindir: Path, settings: dict[str, str] | None = None) -> None:
        self.bindir = bindir
        self.settings = dict(settings or {})
        self.owner = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="jobq-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        try:
            if self.owner:  # the server's user must own (and reach) everything it writes
                os.chown(self.root, *self.owner)
            self._initdb()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        user = {} if self.owner is None else {"user": self.owner[0], "group": self.owner[1],
                                               "extra_groups": []}
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], cwd=self.root, text=True,
                              capture_output=True, timeout=timeout, check=False, **user)
        if proc.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed ({proc.returncode}):"
                                      f" {(proc.stderr or proc.stdout).strip()[-500:]}"
                                      f"{self._log_tail()}")
        return proc

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | server log: " + " | ".join(self.log.read_text().splitlines()[-5:])
        return ""

    def _initdb(self) -> None:
        # --no-sync: the files are fsynced by the server's first checkpoint; a test cluster
        # that a power cut destroys is simply made again.
        self._run("initdb", "-D", str(self.data), "--auth=trust", "--username=postgres",
                  "--encoding=UTF8", "--locale=C", "--no-sync")

    def _options(self) -> str:
        settings = {"listen_addresses": "127.0.0.1", "port": str(self.port),
                    "unix_socket_directories": str(self.root), "max_connections": "50",
                    **self.settings}
        return " ".join(f"-c {key}={value}" for key, value in settings.items())

    def start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(START_TIMEOUT), "-o", self._options())

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean shutdown) or ``immediate`` (a crash)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(START_TIMEOUT))

    def restart(self) -> None:
        self._run("pg_ctl", "restart", "-D", str(self.data), "-m", "fast", "-w", "-l",
                  str(self.log), "-t", str(START_TIMEOUT), "-o", self._options())

    def running(self) -> bool:
        return self.postmaster_pid() is not None

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (first line of postmaster.pid), or None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def close(self) -> None:
        """Stop the server (killing it if it will not stop) and remove its directory."""
        if self.running():
            try:
                self.stop("immediate")
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pid = self.postmaster_pid()
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    time.sleep(0.5)  # its children exit once the postmaster is gone
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster(bindir: Path | None = None,
                    settings: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A started private cluster, stopped and removed on exit."""
    bindir = bindir or find_bindir()
    if bindir is None:
        raise PostgresUnavailable(INSTALL_HINT)
    cluster = Cluster(bindir, settings)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


# -- the server and the session's database -----------------------------------------------------


@dataclass(frozen=True)
class Server:
    """Where the tests' databases go: a DSN to a database there, and the private cluster if any."""

    dsn: str
    cluster: Cluster | None = None


@contextlib.contextmanager
def open_server(dsn: str | None = None, search: Sequence[str] | None = None) -> Iterator[Server]:
    """The server at ``dsn`` (default: JOBQ_TEST_PG_DSN, else 127.0.0.1:5432), or, when
    nothing listens at its address, a private cluster (PostgresUnavailable if none can be made).
    """
    dsn = dsn or os.environ.get(ENV_DSN) or DEFAULT_DSN
    params = psycopg().conninfo.conninfo_to_dict(dsn)
    host, port = str(params.get("host") or ""), int(params.get("port") or 5432)
    if not host or host.startswith("/") or listening(host, port):
        yield Server(dsn)  # a unix socket, or a live server: connection errors speak for it
        return
    bindir = find_bindir(search)
    if bindir is None:
        raise PostgresUnavailable(f"nothing listens at {host}:{port}, and {INSTALL_HINT}")
    with private_cluster(bindir) as cluster:
        yield Server(cluster.dsn(), cluster)


def connect(dsn: str, **kwargs: Any) -> Any:
    """A psycopg connection; a server that refuses becomes PostgresUnavailable naming it."""
    pg = psycopg()
    try:
        return pg.connect(dsn, connect_timeout=10, **kwargs)
    except pg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresUnavailable(f"cannot connect to PostgreSQL at {dsn}: {first}") from exc


@contextlib.contextmanager
def fresh_database(server_dsn: str, prefix: str = "jobq_test") -> Iterator[str]:
    """A new, empty database ``<prefix>_<pid>_<random>`` on that server; its DSN. Dropped on
    exit, with any sessions still connected to it (``WITH (FORCE)``, PostgreSQL 13+)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_dbname(server_dsn, name)
    finally:
        with connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
