"""jobq on PostgreSQL: the same queue API, its jobs in a database shared by many hosts.

Needs psycopg 3 (``pip install 'jobq[postgres]'``); nothing else in jobq imports it.
"""

from .engine import PgEngine, open_engine
from .url import is_url, parse

__all__ = ["PgEngine", "open_engine", "is_url", "parse"]
