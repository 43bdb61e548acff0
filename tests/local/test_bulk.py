"""Inserting many rows in statements of many rows (jobq.local.bulk)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from jobq.local import bulk


@pytest.fixture
def conn(tmp_path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    yield conn
    conn.close()


@pytest.mark.parametrize("count", [0, 1, 99, 100, 101, 250], ids=lambda n: f"rows={n}")
def test_every_row_is_inserted_once_in_order(conn, count):
    """Whole statements of PER_STATEMENT rows, then the rest one by one: every row, once, with
    its values where the row's text puts them."""
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, name TEXT, fixed TEXT, x REAL)")
    rows = [(n, f"row {n}", n / 3) for n in range(count)]
    bulk.insert(conn, "INSERT INTO t (n, name, fixed, x)", "(?, ?, 'f', ?)", rows)
    assert conn.execute("SELECT n, name, x FROM t ORDER BY rowid").fetchall() == rows
    assert conn.execute("SELECT COUNT(*) FROM t WHERE fixed = 'f'").fetchone() == (count,)


def test_a_conflict_raises_as_executemany_does(conn):
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    with pytest.raises(sqlite3.IntegrityError):
        bulk.insert(conn, "INSERT INTO t (n)", "(?)", [(n % 150,) for n in range(200)])


def test_rows_of_too_many_parameters_are_refused(conn):
    with pytest.raises(ValueError, match="too many parameters"):
        bulk.insert(conn, "INSERT INTO t", f"({', '.join('?' * 10)})", [tuple(range(10))])
