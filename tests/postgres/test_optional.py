"""psycopg is optional: jobq imports, and tells a queue URL from a directory, without it."""

from __future__ import annotations

import subprocess
import sys

from conftest import child_env

# psycopg made unimportable, as where the postgres extra is not installed.
NO_PSYCOPG = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ImportError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


def test_jobq_needs_no_psycopg_until_a_postgres_queue_is_opened() -> None:
    code = NO_PSYCOPG + """
import jobq, jobq.postgres
from jobq.errors import ConfigError
from jobq.pickling import PickleRules
assert jobq.postgres.is_url("postgresql://h/db") and not jobq.postgres.is_url("/var/q")
try:
    jobq.postgres.open_engine("postgresql://bob:pw@h/db?queue=q", secret_key=None,
                              rules=PickleRules.build(), max_record_size=1024)
except ConfigError as exc:
    print(exc)
"""
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("h/db is a PostgreSQL queue, and psycopg 3 is not installed:"
                                  " pip install 'jobq[postgres]'")
