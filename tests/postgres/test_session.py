"""Every jobq session's settings (jobq.postgres.session), on a real server."""

from __future__ import annotations

import psycopg
import pytest
from structlog.testing import capture_logs

from jobq.postgres import session
from jobq.postgres.db import connect
from jobq.postgres.url import parse

SHOWN = {"jit": "off", "tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
         "tcp_keepalives_count": "3", "tcp_user_timeout": "25000",
         "client_connection_check_interval": "5s"}


def _shown(conn: psycopg.Connection) -> dict[str, str]:
    return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SHOWN}


def test_defaults_are_applied_on_both_ends(pg_url: str) -> None:
    """libpq's keepalives and user timeout, and the server's for its side of the socket."""
    with connect(parse(pg_url)) as conn:
        given = conn.info.get_parameters()
        assert {k: given[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval",
                                      "keepalives_count", "tcp_user_timeout")} == {
            "keepalives": "1", "keepalives_idle": "5", "keepalives_interval": "2",
            "keepalives_count": "3", "tcp_user_timeout": "25000"}
        assert _shown(conn) == SHOWN


def test_what_the_user_sets_wins(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A libpq parameter in the URL, a server setting in its options or in PGOPTIONS."""
    options = "options=-c%20tcp_keepalives_idle%3D60%20-c%20jit%3Don"
    with connect(parse(f"{pg_url}&tcp_user_timeout=3000&keepalives_idle=30&{options}")) as conn:
        given = conn.info.get_parameters()
        assert (given["tcp_user_timeout"], given["keepalives_idle"]) == ("3000", "30")
        assert given["keepalives_count"] == "3"
        assert _shown(conn) == {**SHOWN, "tcp_keepalives_idle": "60", "jit": "on"}
    monkeypatch.setenv("PGOPTIONS", "-c tcp_keepalives_count=7")
    with connect(parse(pg_url)) as conn:
        assert _shown(conn) == {**SHOWN, "tcp_keepalives_count": "7"}


def test_a_refused_setting_is_skipped_and_logged_once(pg_url: str) -> None:
    """As client_connection_check_interval on PostgreSQL 13: the others still apply."""
    refused = {**session.SERVER, "jobq_no_such_setting": "1"}
    with capture_logs() as events:
        for _ in range(2):
            with psycopg.connect(parse(pg_url).conninfo, autocommit=True) as conn:
                session.configure(conn, "the server", refused)
                assert _shown(conn) == SHOWN
                assert conn.execute("SELECT 1").fetchone() == (1,)
    logged = [e for e in events if e["event"] == "postgres.setting_refused"]
    assert len(logged) == 1
    assert logged[0]["setting"] == "jobq_no_such_setting"
    assert "unrecognized configuration parameter" in logged[0]["error"]
    assert logged[0]["log_level"] == "warning"


def test_the_settings_come_with_the_start_up_packet(pg_url: str) -> None:
    """No statement sets them: the server reports them as the client's, set at start-up."""
    with connect(parse(pg_url)) as conn:
        sources = dict(conn.execute("SELECT name, source FROM pg_settings WHERE name = ANY(%s)",
                                    (list(SHOWN),)).fetchall())
    assert sources == {name: "client" for name in SHOWN}


def test_a_setting_refused_at_start_up_is_applied_after(pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that refuses a start-up setting (PostgreSQL 13 and
    client_connection_check_interval): connected again without them, the others applied by a
    statement, the refused one logged once; later connections to it go that way at once."""
    monkeypatch.setattr(session, "SERVER", {**session.SERVER, "jobq_no_such_setting": "1"})
    monkeypatch.setattr(session, "_no_startup", set())
    monkeypatch.setattr(session, "_refused", set())  # as in a process that logged nothing yet
    loc = parse(pg_url)
    with capture_logs() as events:
        for _ in range(2):
            with connect(loc) as conn:
                assert _shown(conn) == SHOWN
    assert session._no_startup == {loc.server}  # noqa: SLF001
    logged = [e for e in events if e["event"] == "postgres.setting_refused"]
    assert [e["setting"] for e in logged] == ["jobq_no_such_setting"]


def test_start_up_settings_a_pooler_dropped_are_applied_to_every_connection(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pooler told to ignore ``options`` (PgBouncer's ignore_startup_parameters) drops them
    silently: the process's first connection finds them missing and applies them, and the
    server's later connections are configured after they start, not left without them."""
    loc = parse(pg_url)
    monkeypatch.setattr(session, "_no_startup", set())
    monkeypatch.setattr(session, "_checked", set())
    # What such a pooler passes on: the start-up packet without jobq's settings.
    monkeypatch.setattr(session, "startup_options", lambda conninfo, server: None
                        if server in session._no_startup else "-c work_mem=8MB")  # noqa: SLF001
    for _ in range(3):
        with connect(loc) as conn:
            assert _shown(conn) == SHOWN
    assert session._no_startup == {loc.server}  # noqa: SLF001


def test_start_up_settings_that_arrived_are_checked_once(pg_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the start-up packet carried them, the first connection's check finds nothing to
    apply, and the server's connections keep coming configured that way."""
    loc = parse(pg_url)
    monkeypatch.setattr(session, "_no_startup", set())
    monkeypatch.setattr(session, "_checked", set())
    for _ in range(2):
        with connect(loc) as conn:
            assert _shown(conn) == SHOWN
    assert session._checked == {loc.server} and session._no_startup == set()  # noqa: SLF001
