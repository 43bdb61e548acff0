"""The PostgreSQL test infrastructure itself (tests/pg.py and its fixtures in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pg
from conftest import TESTS_DIR, child_env


def _tables(dsn: str) -> list[str]:
    with pg.connect(dsn) as conn:
        rows = conn.execute("SELECT schemaname || '.' || tablename FROM pg_tables"
                            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
        return [r[0] for r in rows]


def _exists(server_dsn: str, name: str) -> bool:
    with pg.connect(server_dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() \
            is not None


def test_session_database_is_fresh_and_ours(pg_dsn: str, pg_server: pg.Server) -> None:
    """The session database is named for this process, empty, and on the session's server."""
    with pg.connect(pg_dsn) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
    assert pg.TEST_DB.match(name) and name.startswith(f"jobq_test_{os.getpid()}_")
    assert _tables(pg_dsn) == []
    assert _exists(pg_server.dsn, name)


def test_fresh_database_is_dropped_on_exit(pg_server: pg.Server) -> None:
    """A fresh database is dropped at the end, even with a session still connected to it."""
    with pg.fresh_database(pg_server.dsn) as dsn:
        name = pg.psycopg().conninfo.conninfo_to_dict(dsn)["dbname"]
        assert _exists(pg_server.dsn, name)
        lingering = pg.connect(dsn)  # as a leaked connection of a failed test would be
    try:
        assert not _exists(pg_server.dsn, name)
    finally:
        lingering.close()


def test_private_cluster_survives_a_crash(pg_cluster: pg.Cluster) -> None:
    """Killed with ``stop -m immediate``, the cluster refuses connections; restarted, it has
    kept every committed row. As root it runs as an unprivileged user."""
    if os.geteuid() == 0:
        assert pg_cluster.owner is not None and pg_cluster.owner[0] != 0
        assert pg_cluster.data.stat().st_uid == pg_cluster.owner[0]
    with pg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS crash (n int)")
        conn.execute("INSERT INTO crash VALUES (1)")
    pg_cluster.stop("immediate")
    assert not pg_cluster.running()
    with pytest.raises(pg.PostgresUnavailable):
        pg.connect(pg_cluster.dsn()).close()
    pg_cluster.start()
    with pg.connect(pg_cluster.dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM crash").fetchone()[0] >= 1


def test_private_cluster_restarts_on_the_same_port(pg_cluster: pg.Cluster) -> None:
    """A restart gives a new postmaster at the same address, and connections work again."""
    before = pg_cluster.postmaster_pid()
    pg_cluster.restart()
    assert pg_cluster.postmaster_pid() not in (None, before)
    with pg.connect(pg_cluster.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_no_server_at_the_address_starts_a_private_cluster() -> None:
    """Where nothing listens but PostgreSQL is installed, a private cluster serves the tests,
    and it is stopped and removed afterwards."""
    port = pg.free_port()
    with pg.open_server(f"postgresql://postgres@127.0.0.1:{port}/postgres") as server:
        assert server.cluster is not None and server.cluster.running()
        with pg.fresh_database(server.dsn) as dsn, pg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        root = server.cluster.root
    assert not server.cluster.running() and not root.exists()


def test_session_fixtures_start_a_private_cluster_where_nothing_listens(tmp_path: Path) -> None:
    """The fixtures themselves, in a child pytest pointed at a free port: its session database
    lives on a private cluster, which is gone when the session ends."""
    out = tmp_path / "cluster-root"
    env = {**child_env(), pg.ENV_DSN: f"postgresql://postgres@127.0.0.1:{pg.free_port()}/postgres",
           "PG_PROBE_OUT": str(out)}
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(TESTS_DIR / "pg_fixture_probe.py")], env=env, cwd=TESTS_DIR.parent,
                           capture_output=True, text=True, timeout=110)
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-2000:]
    assert "1 passed" in child.stdout
    assert not Path(out.read_text()).exists()


def test_no_postgresql_installed_fails_with_what_to_install() -> None:
    """Without a server and without PostgreSQL's programs the tests fail, naming the fix."""
    port = pg.free_port()
    with pytest.raises(pg.PostgresUnavailable, match="apt install postgresql"):
        with pg.open_server(f"postgresql://postgres@127.0.0.1:{port}/postgres", search=[]):
            pass  # pragma: no cover - never reached
