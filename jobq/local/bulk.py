"""Inserting many rows in one statement: ``INSERT ... VALUES (...), (...), ...``.

``executemany`` runs its statement once per row: Python's sqlite3 resets it, clears and binds its
parameters, steps it and counts its changes, row by row. A statement that inserts a hundred rows
does that once for all of them. Measured here (issue 19, inserting the ``ready`` rows of 2,000
new jobs): 1.3-1.6 µs of CPU a row with ``executemany``, 0.6-0.7 in statements of 100 rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

PER_STATEMENT = 100  # rows; at most 999 bound parameters in all, SQLite's limit in older builds


def insert(conn: sqlite3.Connection, head: str, row: str, rows: Sequence[Sequence[Any]],
           tail: str = "") -> None:
    """Run ``head VALUES row, row, ... tail`` for ``rows``: PER_STATEMENT rows a statement (one
    statement text, prepared once per connection), the rest with executemany.

    ``row`` is one row's values, such as ``"(?, ?, 0)"``, with at most 9 parameters; ``tail``
    an upsert clause (``" ON CONFLICT ... DO UPDATE ..."``) or nothing.
    """
    if row.count("?") * PER_STATEMENT > 999:
        raise ValueError(f"too many parameters in a row of {head!r}: {row}")
    whole = len(rows) - len(rows) % PER_STATEMENT
    if whole:
        many = f"{head} VALUES {', '.join([row] * PER_STATEMENT)}{tail}"
        for start in range(0, whole, PER_STATEMENT):
            conn.execute(many, list(chain.from_iterable(rows[start:start + PER_STATEMENT])))
    if whole < len(rows):
        conn.executemany(f"{head} VALUES {row}{tail}", rows[whole:])
