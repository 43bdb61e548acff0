"""Run by tests/test_pg_infra.py in a child pytest (not collected by the suite itself): the
session fixtures, with JOBQ_TEST_PG_DSN at an address where nothing listens."""

from __future__ import annotations

import os
from pathlib import Path

import pg


def test_the_session_runs_on_a_private_cluster(pg_server: pg.Server, pg_dsn: str) -> None:
    assert pg_server.cluster is not None and pg_server.cluster.running()
    assert pg_server.cluster.port != 5432
    with pg.connect(pg_dsn) as conn:
        assert pg.TEST_DB.match(conn.execute("SELECT current_database()").fetchone()[0])
    Path(os.environ["PG_PROBE_OUT"]).write_text(str(pg_server.cluster.root))
