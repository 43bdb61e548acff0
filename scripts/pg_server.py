"""The server a PostgreSQL benchmark measures: its settings, a database for the run, and the
processes measured against it (scripts/bench_pg.py, scripts/bench_pg_engine.py, and the
benchmarks that compare engines: bench_workflows.py, bench_dependencies.py, bench_limits.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
# autovacuum too: a server without it (this machine's CI configuration) never analyzes nor
# vacuums the tables between a run's phases, which changes the figures of the drains that follow.
SETTINGS = ("synchronous_commit", "fsync", "wal_sync_method", "full_page_writes", "commit_delay",
            "wal_level", "shared_buffers", "max_wal_size", "checkpoint_timeout", "max_connections",
            "autovacuum")
MEASURE_TIMEOUT = 1200.0  # seconds for one subprocess measurement


def psycopg_module() -> Any:
    try:
        import psycopg
    except ImportError:
        sys.exit("the PostgreSQL benchmarks need psycopg in this interpreter:"
                 " pip install 'psycopg[binary]'")
    return psycopg


def server_info(dsn: str) -> tuple[str, dict[str, str]]:
    with psycopg_module().connect(dsn) as conn:
        version = conn.execute("SELECT version()").fetchone()[0]
        settings = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in SETTINGS}
    return version, settings


@contextlib.contextmanager
def bench_database(server_dsn: str, tag: str = "") -> Iterator[str]:
    """A database for this run, ``jobq_bench_<pid><tag>``; dropped at the end, with its sessions.
    A run that wants a fresh database per queue gives each its own ``tag``."""
    psycopg = psycopg_module()
    name = f"jobq_bench_{os.getpid()}{tag}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a pid reused after a crash
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield str(psycopg.conninfo.make_conninfo(server_dsn, dbname=name))
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_jobq(dsn: str) -> None:
    """Empty jobq's tables in ``dsn`` (all but the schema version), as the peers' drivers
    TRUNCATE theirs and the raw baselines make their table anew before each measurement: a
    measurement then meets no rows, dead row versions or index entries of the ones before."""
    with psycopg_module().connect(dsn, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE 'jobq\\_%'"
            " AND relname <> 'jobq_schema' AND relnamespace = 'public'::regnamespace")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)}")


def fresh_queues(scratch: Path, server: str | None,
                 stack: contextlib.ExitStack) -> Callable[[str], str]:
    """``location(engine)``: a new, empty queue at each call, for runs that compare engines.
    ``"local"``: a directory under ``scratch``; ``"postgres"``: queue ``bench`` in a database
    of its own on ``server`` (postgresql://user@host:port, no database), dropped when
    ``stack`` closes."""

    def location(engine: str) -> str:
        if engine == "local":
            return str(scratch / uuid.uuid4().hex)
        tag = f"_{uuid.uuid4().hex[:8]}"
        return url_of(stack.enter_context(bench_database(f"{server}/postgres", tag)), "bench")

    return location


def child_env() -> dict[str, str]:
    """Children import this checkout's jobq, and ``peers`` and ``pg_baselines`` from scripts/
    (and nothing of a virtual environment's), from bytecode (see compile_sources)."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{SCRIPTS}"
    return env


def compile_sources() -> None:
    """Compile this checkout's modules before anything is timed (into its ``__pycache__``
    directories, which git ignores), so that a worker starts as an installed jobq does, even
    where the environment says PYTHONDONTWRITEBYTECODE: the peers' venv has its bytecode from
    pip, and compiling jobq's modules costs a worker about 0.2 s at each start."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "jobq"),
                    str(REPO / "workers"), str(SCRIPTS)], env=child_env(), check=True,
                   stdout=subprocess.DEVNULL)


def spawn(cmd: Sequence[str], cwd: Path, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """A measured process in a session of its own (stopped with its children by ``stop``)."""
    return subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=child_env(), cwd=cwd, start_new_session=True)


def stop(procs: Sequence[subprocess.Popen[str]]) -> None:
    """SIGKILL each process's group that is still running, and reap it."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait(procs: list[subprocess.Popen[str]], what: str) -> list[str]:
    """Each process's stdout once all have exited; stopped (process group) on failure or Ctrl-C."""
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=MEASURE_TIMEOUT)
            if proc.returncode != 0:
                tail = (err or "").strip()[-2000:]
                raise RuntimeError(f"{what} failed ({proc.returncode}): {tail}")
            outputs.append(out)
    finally:
        stop(procs)
    return outputs


def url_of(dsn: str, queue: str) -> str:
    """jobq's URL of queue ``queue`` in the database ``dsn`` (a conninfo string) names."""
    d = psycopg_module().conninfo.conninfo_to_dict(dsn)
    host = d.get("host", "127.0.0.1")
    return (f"postgresql://{d.get('user', 'postgres')}@{host}:{d.get('port', 5432)}/{d['dbname']}"
            f"?queue={queue}")
