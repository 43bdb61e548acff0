"""Are the jobq tables of a database the ones this jobq makes? (``jobq verify``)

What is expected is not written twice: the migrations (:mod:`jobq.postgres.schema`) are run
again as temporary tables, on a connection of their own, in a transaction that is rolled back;
the catalog of those tables is then compared with the real ones': each table, each column's
type, NOT NULL and collation, each index's definition. An index or a column an operator added
is not reported; one missing or changed is.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from .db import connect
from .schema import MIGRATIONS, SCHEMA_TABLE, VERSION
from .url import PgLocation

_COLUMNS = (
    "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " coalesce(co.collname, '') FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
    " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
    " WHERE c.relnamespace = %s AND c.relkind = 'r' AND c.relname = ANY(%s)"
    " AND a.attnum > 0 AND NOT a.attisdropped")
_INDEXES = (
    "SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x"
    " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
    " WHERE t.relnamespace = %s AND t.relname = ANY(%s)")
_TABLE_IN_DEFINITION = re.compile(r" ON (?:\S+\.)?(jobq_\w+) ")

Catalog = tuple[dict[str, dict[str, tuple[Any, ...]]], dict[str, str]]


def problems(loc: PgLocation) -> list[str]:
    """How the database's jobq tables differ from this jobq's schema (nothing: they do not)."""
    conn = connect(loc)
    try:
        with conn.transaction():
            found = _version(conn) + _compare(conn)
            raise psycopg.Rollback()  # the temporary tables go with it
    finally:
        conn.close()
    return found  # (set before the rollback)


def _version(conn: psycopg.Connection[Any]) -> list[str]:
    if conn.execute("SELECT to_regclass('jobq_schema')").fetchone() in (None, (None,)):
        return ["table jobq_schema is missing"]
    versions = [int(v) for v, in conn.execute("SELECT version FROM jobq_schema")]
    if versions != [VERSION]:
        return [f"jobq_schema holds version(s) {versions or 'none'}; this jobq made version"
                f" {VERSION} (one row)"]
    return []


def _compare(conn: psycopg.Connection[Any]) -> list[str]:
    row = conn.execute("SELECT coalesce((SELECT relnamespace FROM pg_class WHERE oid ="
                       " to_regclass('jobq_jobs')), (SELECT oid FROM pg_namespace WHERE"
                       " nspname = current_schema()))").fetchone()
    real_ns = row[0] if row else None
    for statements in ((SCHEMA_TABLE,), *MIGRATIONS):
        for sql in statements:
            conn.execute(re.sub(r"^CREATE TABLE (IF NOT EXISTS )?", "CREATE TEMPORARY TABLE ",
                                sql))
    found = conn.execute("SELECT pg_my_temp_schema()").fetchone()
    expected = _catalog(conn, found[0] if found else None, None)
    real = _catalog(conn, real_ns, list(expected[0]))
    out: list[str] = []
    for table, columns in expected[0].items():
        if table not in real[0]:
            out.append(f"table {table} is missing")
            continue
        for name, want in columns.items():
            have = real[0][table].get(name)
            if have is None:
                out.append(f"column {table}.{name} is missing")
            elif have != want:
                out.append(f"column {table}.{name} is {_column(have)}; expected {_column(want)}")
    for index, want in expected[1].items():
        have = real[1].get(index)
        table = _TABLE_IN_DEFINITION.search(want)
        if table is not None and table[1] not in real[0]:
            continue  # said above
        if have is None:
            out.append(f"index {index} is missing: {want}")
        elif have != want:
            out.append(f"index {index} is {have}; expected {want}")
    return out


def _catalog(conn: psycopg.Connection[Any], namespace: Any, tables: list[str] | None
             ) -> Catalog:
    """The columns of each table and the definition of each index, in ``namespace``."""
    names = tables if tables is not None else [
        r for r, in conn.execute("SELECT relname FROM pg_class WHERE relnamespace = %s"
                                 " AND relkind = 'r' AND relname LIKE 'jobq%%'", (namespace,))]
    columns: dict[str, dict[str, tuple[Any, ...]]] = {}
    for table, column, *rest in conn.execute(_COLUMNS, (namespace, names)):
        columns.setdefault(table, {})[column] = tuple(rest)
    indexes = {index: _TABLE_IN_DEFINITION.sub(r" ON \1 ", definition)
               for _, index, definition in conn.execute(_INDEXES, (namespace, names))}
    return columns, indexes


def _column(found: tuple[Any, ...]) -> str:
    kind, not_null, collation = found
    return (f"{kind}{' NOT NULL' if not_null else ''}"
            f"{f' COLLATE {collation}' if collation not in ('', 'default') else ''}")
