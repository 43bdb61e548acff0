"""CI's own PostgreSQL database: made for one run of the suite, dropped after it.

    python .ci/database.py create       # prints the new database's DSN, or nothing
    python .ci/database.py drop DSN

``create`` makes ``jobq_ci_<pid>_<random>`` on the machine's server (127.0.0.1:5432, or
JOBQ_TEST_PG_DSN's) and prints its DSN, which .ci/run gives the suite as JOBQ_TEST_PG_DSN: the
tests make their session databases from it and nothing of the run is left in the server's own
databases. It prints nothing when no server listens: the suite then starts a private cluster
(tests/pg.py), and says what to install if PostgreSQL is missing.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg import DEFAULT_DSN, listening  # noqa: E402  (the suite's own way to find a server)


def create(server_dsn: str) -> str:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(server_dsn)
    if not listening(parts.get("host", "127.0.0.1"), int(parts.get("port", 5432))):
        return ""
    name = f"jobq_ci_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_conninfo(server_dsn, dbname=name)


def drop(dsn: str) -> None:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(dsn)["dbname"]
    if not name.startswith("jobq_ci_"):
        raise SystemExit(f"refusing to drop {name!r}: not a database made by .ci/database.py")
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str]) -> int:
    if argv[:1] == ["create"] and len(argv) == 1:
        print(create(os.environ.get("JOBQ_TEST_PG_DSN") or DEFAULT_DSN))
        return 0
    if argv[:1] == ["drop"] and len(argv) == 2:
        drop(argv[1])
        return 0
    print("usage: python .ci/database.py create | drop DSN", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
