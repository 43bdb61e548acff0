"""The schema jobq creates and upgrades itself, and the checks made when a queue is opened."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

import pg
from conftest import child_env
from jobq.errors import ConfigError, IncompatibleFormat, StorageError, WrongSecretKey
from jobq.postgres import schema
from jobq.postgres.url import parse
from .pgq import KEY, frame, new_queue_url, open_url, url_of


@pytest.fixture
def fresh_url(pg_server: pg.Server) -> str:
    with pg.fresh_database(pg_server.dsn, prefix="jobq_test_schema") as dsn:
        yield url_of(dsn)


def test_first_open_creates_the_schema_and_the_queue(fresh_url: str) -> None:
    engine = open_url(fresh_url + "?queue=q")
    again = open_url(fresh_url + "?queue=q")
    try:
        assert engine.created and not again.created
        with psycopg.connect(parse(fresh_url).conninfo) as conn:
            assert conn.execute("SELECT version FROM jobq_schema").fetchall() == [(schema.VERSION,)]
    finally:
        engine.close()
        again.close()


def test_processes_opening_a_new_database_at_once_create_it_once(fresh_url: str) -> None:
    code = ("import sys; from postgres.pgq import open_url;"
            " e = open_url(sys.argv[1]); print(e.created); e.close()")
    procs = [subprocess.Popen([sys.executable, "-c", code, fresh_url + "?queue=race"],
                              env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(out.strip() for out, _ in outs) == ["False"] * 3 + ["True"]


def test_a_newer_schema_is_refused_naming_both_versions(fresh_url: str) -> None:
    open_url(fresh_url).close()
    with psycopg.connect(parse(fresh_url).conninfo, autocommit=True) as conn:
        conn.execute("UPDATE jobq_schema SET version = %s", (schema.VERSION + 1,))
    with pytest.raises(IncompatibleFormat,
                       match=f"version {schema.VERSION + 1}; this jobq knows versions up to"
                             f" {schema.VERSION}: upgrade jobq") as info:
        open_url(fresh_url)
    assert (info.value.found, info.value.supported) == (schema.VERSION + 1, schema.VERSION)


def test_an_older_schema_is_upgraded(fresh_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    open_url(fresh_url + "?queue=q").close()
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS,
                                               ("ALTER TABLE jobq_meta ADD COLUMN note text",)))
    monkeypatch.setattr(schema, "VERSION", schema.VERSION + 1)
    open_url(fresh_url + "?queue=q").close()
    with psycopg.connect(parse(fresh_url).conninfo) as conn:
        assert conn.execute("SELECT version FROM jobq_schema").fetchone()[0] == schema.VERSION
        assert conn.execute("SELECT note FROM jobq_meta").fetchall() == [(None,)]


def test_signed_queue_refuses_no_key_and_another_key(pg_engine_dsn: str) -> None:
    url = new_queue_url(pg_engine_dsn)
    engine = open_url(url, KEY)
    engine.append([frame("a", key=KEY)])
    engine.close()
    with pytest.raises(WrongSecretKey, match="holds signed records: open it with its secret_key"):
        open_url(url)
    with pytest.raises(WrongSecretKey, match="was written with a different secret key"):
        open_url(url, b"o" * 32)
    open_url(url, KEY).close()


def test_unsigned_queue_refuses_a_key(pg_engine_dsn: str) -> None:
    url = new_queue_url(pg_engine_dsn)
    open_url(url).close()
    with pytest.raises(WrongSecretKey, match="created without a secret key"):
        open_url(url, KEY)


def test_max_record_size_is_the_one_recorded_at_creation(pg_engine_dsn: str) -> None:
    url = new_queue_url(pg_engine_dsn)
    open_url(url, max_record_size=4096).close()
    engine = open_url(url, max_record_size=1 << 20)
    try:
        with pytest.raises(Exception, match="exceeds the limit of 4096"):
            engine.append([frame("big", args=(b"x" * 5000,))])
        assert not engine.exists("big")
    finally:
        engine.close()


def test_unreachable_server_is_a_storage_error_naming_it_without_password() -> None:
    port = pg.free_port()
    with pytest.raises(StorageError, match=f"PostgreSQL at 127.0.0.1:{port}/db") as info:
        open_url(f"postgresql://bob:hunter2@127.0.0.1:{port}/db?queue=q")
    assert "hunter2" not in str(info.value)


def test_clock_cannot_be_chosen(pg_engine_dsn: str) -> None:
    with pytest.raises(ConfigError, match="server's clock"):
        open_url(new_queue_url(pg_engine_dsn), clock=lambda: 0.0)
