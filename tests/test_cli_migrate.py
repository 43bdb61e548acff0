"""``jobq migrate``: storage brought up to this jobq's version before anything uses it, and
``--check`` asking without changing anything; on a directory and on a PostgreSQL database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pg
from jobq import Queue
from jobq.local import directory
from jobq.postgres import schema
from jobq.postgres.url import parse
from postgres.pgq import url_of
from test_cli import jobq, ok


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> Iterator[str]:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_migrate") as dsn:
        yield url_of(dsn)


def _schema_version(url: str) -> int | None:
    with psycopg.connect(parse(url).conninfo) as conn:
        if not conn.execute("SELECT to_regclass('jobq_schema') IS NOT NULL").fetchone()[0]:
            return None
        return conn.execute("SELECT version FROM jobq_schema").fetchone()[0]


def test_migrate_creates_the_schema_of_an_empty_database_and_check_says_when_one_is_due(
        fresh_url: str) -> None:
    due = jobq("migrate", "--check", "--dir", fresh_url)
    assert due.returncode == 1, due
    assert "run jobq migrate" in due.stdout and _schema_version(fresh_url) is None

    assert f"now at version {schema.VERSION}" in ok("migrate", "--dir", fresh_url)
    assert _schema_version(fresh_url) == schema.VERSION
    assert "nothing to do" in ok("migrate", "--check", "--dir", fresh_url)
    assert "nothing to do" in ok("migrate", "--dir", fresh_url)


def test_migrate_refuses_a_newer_schema_naming_both_versions(fresh_url: str) -> None:
    ok("migrate", "--dir", fresh_url)
    with psycopg.connect(parse(fresh_url).conninfo) as conn:
        conn.execute("UPDATE jobq_schema SET version = %s", (schema.VERSION + 1,))
    for args in (("migrate",), ("migrate", "--check")):
        done = jobq(*args, "--dir", fresh_url)
        assert done.returncode == 1, done
        assert f"version {schema.VERSION + 1}" in done.stderr
        assert f"versions up to {schema.VERSION}" in done.stderr
    assert _schema_version(fresh_url) == schema.VERSION + 1  # left as it was


def test_migrate_names_an_unreachable_server(fresh_url: str) -> None:
    url = fresh_url.replace(f":{parse(fresh_url).server.split(':')[1].split('/')[0]}/",
                            f":{pg.free_port()}/")
    done = jobq("migrate", "--dir", url)
    assert done.returncode == 1 and done.stderr.startswith("jobq: error: PostgreSQL at 127.0.0.1")
    assert "cannot connect" in done.stderr and "Traceback" not in done.stderr


def test_migrate_upgrades_an_old_queue_directory(tmp_path: Path) -> None:
    path = tmp_path / "q"
    with Queue(path) as q:
        q.enqueue(print, "kept")
    info = json.loads((path / "jobq.json").read_text())
    (path / "jobq.json").write_text(json.dumps({**info, "format": 1}))

    due = jobq("migrate", "--check", "--dir", str(path))
    assert due.returncode == 1 and "was at version 1" in due.stdout
    assert json.loads((path / "jobq.json").read_text())["format"] == 1  # --check changed nothing
    assert f"now at version {directory.FORMAT}" in ok("migrate", "--dir", str(path))
    assert json.loads((path / "jobq.json").read_text())["format"] == directory.FORMAT
    assert "nothing to do" in ok("migrate", "--check", "--dir", str(path))
    with Queue(path) as q:
        assert q.counts()["queued"] == 1


def test_migrate_says_there_is_no_queue_to_migrate(tmp_path: Path) -> None:
    done = jobq("migrate", "--dir", str(tmp_path / "none"))
    assert done.returncode == 1 and "not a queue" in done.stderr
    assert not (tmp_path / "none").exists()
