"""Which database errors a worker waits out (transient) and which stop it (permanent)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from jobq.postgres.db import is_transient, storage_error
from jobq.postgres.url import parse


@pytest.mark.parametrize("exc, broken, expected", [
    (errors.AdminShutdown("terminating connection due to administrator command"), True, True),
    (errors.CannotConnectNow("the database system is starting up"), False, True),
    (errors.TooManyConnections("sorry, too many clients already"), False, True),
    (errors.SerializationFailure("could not serialize access"), False, True),
    (errors.DeadlockDetected("deadlock detected"), False, True),
    (errors.QueryCanceled("canceling statement due to statement timeout"), False, True),
    (psycopg.OperationalError("consuming input failed: server closed the connection"
                              " unexpectedly"), True, True),
    (psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 1'
                              " failed: Connection refused"), False, True),
    (psycopg.OperationalError("connection failed: ...: FATAL:  the database system is"
                              " shutting down"), False, True),
    (errors.InsufficientPrivilege("permission denied for table jobq_jobs"), False, False),
    (errors.UndefinedTable('relation "jobq_jobs" does not exist'), False, False),
    (errors.UniqueViolation("duplicate key"), False, False),
    (psycopg.OperationalError('connection failed: ...: FATAL:  database "nope" does not'
                              " exist"), False, False),
    (psycopg.OperationalError('connection failed: ...: FATAL:  password authentication failed'
                              ' for user "jobq"'), False, False),
    (ValueError("not a database error"), True, False),
], ids=["admin-shutdown", "starting-up", "too-many-clients", "serialization", "deadlock",
        "statement-timeout", "connection-lost", "refused", "shutting-down",
        "permission-denied", "no-table", "unique-violation", "no-database", "bad-password",
        "not-psycopg"])
def test_transient_or_permanent(exc: BaseException, broken: bool, expected: bool) -> None:
    assert is_transient(exc, broken) is expected


def test_the_error_names_the_server_never_the_password_and_says_transient() -> None:
    loc = parse("postgresql://jobq:secret@db.example:6543/work?queue=mail")
    err = storage_error(errors.AdminShutdown("terminating connection"), loc, "claim jobs", True)
    assert str(err) == ("PostgreSQL at db.example:6543/work (queue 'mail'): cannot claim jobs:"
                        " terminating connection")
    assert err.transient and err.server == "db.example:6543/work" and "secret" not in str(err)
