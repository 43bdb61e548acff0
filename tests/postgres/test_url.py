"""Queue URLs: postgresql://user@host:port/db?queue=NAME."""

from __future__ import annotations

import pytest

from jobq.errors import ConfigError
from jobq.postgres.db import connect
from jobq.postgres.url import is_url, parse


def test_queue_is_taken_out_and_the_rest_kept() -> None:
    loc = parse("postgresql://bob:secret@db.example:5433/app?sslmode=require&queue=billing")
    assert loc.queue == "billing"
    assert loc.conninfo == "postgresql://bob:secret@db.example:5433/app?sslmode=require"
    assert loc.server == "db.example:5433/app"
    assert loc.location == "postgresql://bob@db.example:5433/app?sslmode=require&queue=billing"
    assert "secret" not in loc.location + loc.server


def test_default_queue_and_port() -> None:
    loc = parse("postgres://localhost/app")
    assert (loc.queue, loc.server, loc.conninfo) == ("default", "localhost:5432/app",
                                                     "postgres://localhost/app")


@pytest.mark.parametrize("url", ["/tmp/q", "postgresql://h/db?queue=",
                                 "postgresql://h/db?queue=a&queue=b", "postgresql://h:notaport/db",
                                 "postgresql://h/db?queue=a%0Ab"])
def test_bad_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse(url)


def test_is_url() -> None:
    assert is_url("postgresql://h/db") and is_url("postgres://h/db")
    assert not is_url("./postgresql") and not is_url("/var/q")


def test_wakeups_is_taken_out_kept_in_the_location_and_listen_by_default() -> None:
    loc = parse("postgresql://bob:secret@h/app?wakeups=poll&sslmode=require&queue=q")
    assert loc.wakeups == "poll"
    assert loc.conninfo == "postgresql://bob:secret@h/app?sslmode=require"
    assert loc.location == "postgresql://bob@h/app?wakeups=poll&sslmode=require&queue=q"
    assert parse(loc.location).wakeups == "poll"  # reopening from the location keeps it
    assert parse("postgresql://h/app").wakeups == "listen"


@pytest.mark.parametrize("url", ["postgresql://bob:secret@h/db?wakeups=never",
                                 "postgresql://bob:secret@h/db?wakeups=",
                                 "postgresql://bob:secret@h/db?wakeups=poll&wakeups=listen"])
def test_bad_wakeups_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError, match="wakeups") as caught:
        parse(url)
    assert "secret" not in str(caught.value)


def test_libpq_parameters_pass_through_unchanged() -> None:
    """libpq decodes only %XX: a space re-encoded as '+' would reach it as a '+'."""
    loc = parse("postgresql://bob:secret@h/app?options=-c%20x%3Dy&queue=q&application_name=a+b")
    assert loc.conninfo == "postgresql://bob:secret@h/app?options=-c%20x%3Dy&application_name=a+b"
    assert loc.location == "postgresql://bob@h/app?options=-c%20x%3Dy&application_name=a+b&queue=q"
    reopened = parse(loc.location).conninfo
    assert reopened == "postgresql://bob@h/app?options=-c%20x%3Dy&application_name=a+b"


def test_options_in_the_url_reach_the_server(pg_url: str) -> None:
    """A setting given in the URL's options is the session's (here statement_timeout)."""
    loc = parse(f"{pg_url}&options=-c%20statement_timeout%3D4321")
    with connect(loc) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
