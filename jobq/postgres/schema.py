"""The tables, created and upgraded by jobq itself, and the checks made when a queue is opened.

Tables (every one has a ``queue`` column: many named queues share one database)::

    jobq_schema     one row: the schema version (MIGRATIONS), read by every open
    jobq_meta       one row per queue: whether its records are signed, the fingerprint of its
                    current key and of the old keys whose records may remain (jobq.postgres.keys),
                    its max_record_size (settings every opener must share, as jobq.json holds them)
    jobq_jobs       the hot table: queued, delayed, failed-waiting and running jobs only; claims
                    seek its partial index of ready rows (priority, then arrival ``seq``)
    jobq_done       finished jobs (succeeded, dead, cancelled) with their snapshots, moved there
                    by the transaction that finishes them, so that claims never wade through them
    jobq_payloads   each job's framed record (jobq.record: checksummed, signed with a key)
    jobq_snapshots  each unfinished job's pickled JobState once something wrote one (signed like
                    the directory engine's snapshots): apart from the rows claims update
    jobq_workers    the records ``jobq workers`` shows (liveness itself is an advisory lock)
    jobq_cancels    per queue, a number bumped whenever a running job is asked to cancel
    jobq_schedules  periodic schedules (jobq.schedule) with their next fire times (version 3)
    jobq_dependencies  each dependent job's parents, in order, with its policy (version 4;
                    jobq.postgres.dependencies); jobs waiting for them have status 'waiting'
    jobq_groups     each q.map group: its size, the count of its members that ended, its final
                    job (version 5; jobq.postgres.groups)
    jobq_limits     concurrency and rate limits per key, with each rate's window (version 6;
                    jobq.postgres.limits)
    jobq_job_keys   each keyed job's concurrency key and unique key (version 6)
    jobq_retention  the ttls of jobs enqueued with one (version 7; jobq.postgres.retention);
                    a finished job's expiry is ``jobq_done.expires_at``, set as it moves there
    jobq_totals     running totals and duration buckets for /metrics, 16 rows a name per queue
                    so that workers do not queue on one row (version 8; jobq.postgres.totals)
    jobq_jobs.concurrency_key  each unfinished job's concurrency key (also in jobq_job_keys),
                    with a partial index of the ready keyed jobs, so that a claim of a limited
                    key seeks its next jobs (version 9; jobq.postgres.limits)
    jobq_jobs.held  whether the job's concurrency key has a limit: the ready index holds the
                    ready jobs that are not held, so that plain claims never walk past those
                    (version 10; jobq.postgres.limits)
    jobq_done.blob  NULL for a plain success (version 11; jobq.state.plain_success): its state is
                    its row's columns, ``finished_at`` its ``updated_at``; a jobq of version 10
                    would read such a job without its finish time, so it refuses the schema
    jobq_jobs_arrival  the arrival order of the unfinished jobs but the plain ready ones of
                    priority 0, which the ready index keeps in that order (version 12, in place
                    of jobq_jobs_seq; jobq.postgres.reading): a new job of priority 0 writes
                    three index entries in jobq_jobs, not four (``enqueue_many``: 16% fewer
                    instructions a job in the server, 7% less WAL)
    jobq_jobs_plain_ready without deduplication (version 13): its pages split without a
                    pass over them for duplicate keys, which it next to never has (2% fewer)

Migrations run in one transaction under a transaction advisory lock, so that processes opening
a new database at once create it once. A jobq older than the schema it finds refuses to use it:
version 2 lists old keys, which a jobq of version 1 (one key) would take the records of for damage.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg

from ..codec import key_check
from ..errors import IncompatibleFormat, WrongSecretKey
from . import limits, totals
from .reading import ARRIVAL_INDEXED
from .url import PgLocation

SCHEMA_LOCK = 0x6A6F_6271_0000_0001  # pg_advisory_xact_lock key of migrations ("jobq", 1)

# Ids, queue names and owners compare byte by byte (COLLATE "C"), whatever the database's
# collation: an id prefix is then an index range, and owners "<worker>/<n>" sort after "<worker>".
_COLUMNS = """
    queue text COLLATE "C" NOT NULL,
    job_id text COLLATE "C" NOT NULL,
    seq bigint {seq},
    status text NOT NULL,
    ready boolean NOT NULL DEFAULT false,
    priority bigint NOT NULL,
    run_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    token bigint NOT NULL DEFAULT 0,
    owner text COLLATE "C",
    lease_expires double precision,
    prefetched boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    progress double precision NOT NULL DEFAULT 0,
    task text NOT NULL,
    enqueued_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    started_at double precision,
    PRIMARY KEY (queue, job_id)"""

SCHEMA_TABLE = "CREATE TABLE IF NOT EXISTS jobq_schema (version integer NOT NULL)"
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # version 1
        """CREATE TABLE jobq_meta (
            queue text COLLATE "C" PRIMARY KEY,
            signed boolean NOT NULL,
            key_check text,
            max_record_size bigint NOT NULL,
            created_at double precision NOT NULL)""",
        # fillfactor: room on each page for the new versions of rows that claims update
        f"CREATE TABLE jobq_jobs ({_COLUMNS.format(seq='GENERATED BY DEFAULT AS IDENTITY')})"
        " WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01)",
        "CREATE INDEX jobq_jobs_ready ON jobq_jobs (queue, priority DESC, seq) WHERE ready",
        "CREATE INDEX jobq_jobs_waiting ON jobq_jobs (queue, run_at)"
        " WHERE NOT ready AND status IN ('queued', 'failed')",
        "CREATE INDEX jobq_jobs_running ON jobq_jobs (queue, owner) WHERE status = 'running'",
        "CREATE INDEX jobq_jobs_seq ON jobq_jobs (queue, seq)",
        # A finished job's snapshot is in its row (``blob``): one write fewer per job.
        f"CREATE TABLE jobq_done ({_COLUMNS.format(seq='NOT NULL')}, blob bytea)",
        "CREATE INDEX jobq_done_seq ON jobq_done (queue, seq)",
        "CREATE INDEX jobq_done_updated ON jobq_done (queue, status, updated_at)",
        """CREATE TABLE jobq_payloads (
            queue text COLLATE "C" NOT NULL, job_id text COLLATE "C" NOT NULL, frame bytea NOT NULL,
            PRIMARY KEY (queue, job_id))""",
        """CREATE TABLE jobq_snapshots (
            queue text COLLATE "C" NOT NULL, job_id text COLLATE "C" NOT NULL, blob bytea NOT NULL,
            PRIMARY KEY (queue, job_id)) WITH (fillfactor = 70)""",
        """CREATE TABLE jobq_workers (
            queue text COLLATE "C" NOT NULL, worker text COLLATE "C" NOT NULL,
            record jsonb NOT NULL,
            reaped_at double precision, reaped_by text, jobs jsonb,
            PRIMARY KEY (queue, worker))""",
        """CREATE TABLE jobq_cancels (
            queue text COLLATE "C" PRIMARY KEY, generation bigint NOT NULL DEFAULT 0)""",
    ),
    (  # version 2: key rotation (jobq.postgres.keys)
        "ALTER TABLE jobq_meta ADD COLUMN old_key_checks text[] NOT NULL DEFAULT '{}'",
    ),
    (  # version 3: periodic schedules (jobq.postgres.schedules)
        """CREATE TABLE jobq_schedules (
            queue text COLLATE "C" NOT NULL, name text COLLATE "C" NOT NULL,
            cron text NOT NULL, tz text NOT NULL, spec text NOT NULL,
            next_at double precision NOT NULL, last_job text,
            PRIMARY KEY (queue, name))""",
    ),
    (  # version 4: dependencies and the status 'waiting' (jobq.postgres.dependencies)
        """CREATE TABLE jobq_dependencies (
            queue text COLLATE "C" NOT NULL, child text COLLATE "C" NOT NULL,
            pos integer NOT NULL, parent text COLLATE "C" NOT NULL, policy text NOT NULL,
            PRIMARY KEY (queue, child, pos))""",
        "CREATE INDEX jobq_dependencies_parent ON jobq_dependencies (queue, parent)",
        "CREATE INDEX jobq_jobs_waiting_parents ON jobq_jobs (queue, seq)"
        " WHERE status = 'waiting'",
    ),
    (  # version 5: groups of q.map (jobq.postgres.groups)
        """CREATE TABLE jobq_groups (
            queue text COLLATE "C" NOT NULL, group_id text COLLATE "C" NOT NULL,
            chunk_size integer NOT NULL, jobs bigint, items bigint,
            ended bigint NOT NULL DEFAULT 0, then_job text COLLATE "C",
            created_at double precision NOT NULL, done_at double precision,
            PRIMARY KEY (queue, group_id))""",
    ),
    limits.MIGRATION,  # version 6: limits per key and unique keys (jobq.postgres.limits)
    (  # version 7: result retention (jobq.postgres.retention)
        """CREATE TABLE jobq_retention (
            queue text COLLATE "C" NOT NULL, job_id text COLLATE "C" NOT NULL,
            result_ttl double precision, failure_ttl double precision,
            PRIMARY KEY (queue, job_id))""",
        "ALTER TABLE jobq_done ADD COLUMN expires_at double precision",
        "CREATE INDEX jobq_done_expires ON jobq_done (queue, expires_at)"
        " WHERE expires_at IS NOT NULL",
    ),
    totals.MIGRATION,  # version 8: running totals for /metrics (jobq.postgres.totals)
    limits.KEY_COLUMN,  # version 9: jobq_jobs.concurrency_key, indexed (jobq.postgres.limits)
    limits.HELD,  # version 10: jobs of limited keys out of the ready index (jobq.postgres.limits)
    (  # version 11: plain successes stored without a snapshot (jobq.state.plain_success)
        "COMMENT ON COLUMN jobq_done.blob IS 'the pickled JobState; NULL: a plain success,"
        " its state its columns (finished_at = updated_at)'",
    ),
    (  # version 12: no arrival index entry for a plain ready job of priority 0
        "DROP INDEX jobq_jobs_seq",
        f"CREATE INDEX jobq_jobs_arrival ON jobq_jobs (queue, seq) WHERE {ARRIVAL_INDEXED}",
    ),
    (  # version 13: the ready index without deduplication. Its keys repeat only when a job is
        # ready again (a retry, a hand-back) before the entry of its earlier ready version is
        # gone: the pass over a full page before each split found next to nothing to merge.
        "ALTER INDEX jobq_jobs_plain_ready SET (deduplicate_items = off)",
    ),
)
VERSION = len(MIGRATIONS)


class QueueMeta(NamedTuple):
    created: bool  # this open made the queue
    max_record_size: int
    key_check: str | None  # the fingerprint of the key that signs (None: unsigned)
    old_key_checks: tuple[str, ...]  # of old keys whose records may remain


def version(conn: psycopg.Connection[Any]) -> int:
    """The schema version the database holds (0: no jobq tables yet), changing nothing."""
    row = conn.execute("SELECT to_regclass('jobq_schema') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return 0
    current = conn.execute("SELECT version FROM jobq_schema").fetchone()
    return 0 if current is None else int(current[0])


def refuse_newer(found: int, loc: PgLocation) -> None:
    """IncompatibleFormat if schema version ``found`` is newer than this jobq knows."""
    if found > VERSION:
        raise IncompatibleFormat(
            f"the jobq schema in PostgreSQL at {loc.server} is version {found}; this jobq"
            f" knows versions up to {VERSION}: upgrade jobq to use it",
            found=found, supported=VERSION)


def migrate(conn: psycopg.Connection[Any], loc: PgLocation) -> int:
    """Bring the schema to VERSION (creating it in an empty database); return the version found.

    IncompatibleFormat if the schema is newer than this jobq knows.
    """
    if version(conn) == VERSION:  # the common case, checked without a lock or DDL
        return VERSION
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(SCHEMA_TABLE)
        row = conn.execute("SELECT version FROM jobq_schema").fetchone()
        found = 0 if row is None else int(row[0])
        refuse_newer(found, loc)
        for statements in MIGRATIONS[found:]:
            for sql in statements:
                conn.execute(sql)
        if row is None:
            conn.execute("INSERT INTO jobq_schema (version) VALUES (%s)", (VERSION,))
        elif found < VERSION:
            conn.execute("UPDATE jobq_schema SET version = %s", (VERSION,))
    return found


def open_queue(conn: psycopg.Connection[Any], loc: PgLocation, secret_key: bytes | None,
               max_record_size: int) -> QueueMeta:
    """Record the queue if it is new, then check that it is opened signed as it was created.

    The directory engine's rules (jobq.directory): a signed queue needs a key, an unsigned one
    refuses a key, both before anything is read. Which keys it accepts is for
    :func:`jobq.postgres.keys.admit` to say.
    """
    with conn.transaction():
        now = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8").fetchone()
        created = conn.execute(
            "INSERT INTO jobq_meta (queue, signed, key_check, max_record_size, created_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (queue) DO NOTHING RETURNING queue",
            (loc.queue, secret_key is not None, key_check(secret_key), max_record_size,
             now[0] if now else 0.0)).fetchone() is not None
        if created:
            conn.execute("INSERT INTO jobq_cancels (queue) VALUES (%s) ON CONFLICT DO NOTHING",
                         (loc.queue,))
        signed, check, old, size = conn.execute(
            "SELECT signed, key_check, old_key_checks, max_record_size FROM jobq_meta"
            " WHERE queue = %s", (loc.queue,)).fetchone() or (False, None, [], max_record_size)
    where = loc.location
    if signed and secret_key is None:
        raise WrongSecretKey(f"{where} holds signed records: open it with its secret_key"
                             " (or set JOBQ_SECRET_KEY)", path=where)
    if not signed and secret_key is not None:
        raise WrongSecretKey(f"{where} was created without a secret key; its records are not"
                             " signed, so it cannot be opened with one", path=where)
    return QueueMeta(created, int(size), check, tuple(old))
