"""Tests for jobq.local.sqlite_dbm: the dbm-style mapping on SQLite WAL that backs the state shelf."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from jobq.local import sqlite_dbm
from jobq.local.sqlite_dbm import SqliteDbm, connect

PY313 = Path("/root/.pyenv/versions/3.13.0/bin/python3.13")
CHILD_TIMEOUT = 60


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


@pytest.fixture
def db(db_path: Path):
    mapping = sqlite_dbm.open(db_path, "c")
    yield mapping
    mapping.close()


@pytest.fixture
def py313() -> Path:
    if not PY313.exists():
        pytest.skip("Python 3.13 with dbm.sqlite3 is not installed on this machine")
    return PY313


def _plain_rows(path: Path) -> dict[bytes, bytes]:
    """Read the Dict table with a plain sqlite3 connection, bypassing jobq."""
    with closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("SELECT key, value FROM Dict").fetchall())


def _run_py313(py313: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    """Run code in an isolated Python 3.13 child; subprocess.run kills and reaps it on timeout."""
    return subprocess.run([str(py313), "-I", "-c", code, *args], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)


# --- the MutableMapping contract -------------------------------------------------------------


def test_set_then_get_returns_the_value(db: SqliteDbm) -> None:
    """A value stored under a key reads back unchanged."""
    db[b"alpha"] = b"one"
    assert db[b"alpha"] == b"one"


def test_overwrite_replaces_the_value_and_keeps_one_row(db: SqliteDbm) -> None:
    """Storing to an existing key replaces its value without adding a second row."""
    db[b"alpha"] = b"one"
    db[b"alpha"] = b"two"
    assert db[b"alpha"] == b"two"
    assert len(db) == 1


def test_delete_removes_the_key(db: SqliteDbm) -> None:
    """A deleted key is no longer contained, readable or counted."""
    db[b"alpha"] = b"one"
    db[b"beta"] = b"two"
    del db[b"alpha"]
    assert b"alpha" not in db
    assert len(db) == 1
    with pytest.raises(KeyError):
        db[b"alpha"]


def test_contains_reports_present_and_absent_keys(db: SqliteDbm) -> None:
    """``in`` is true for a stored key and false for any other."""
    db[b"alpha"] = b"one"
    assert b"alpha" in db
    assert b"beta" not in db
    assert b"alph" not in db


def test_len_and_iter_cover_every_key(db: SqliteDbm) -> None:
    """``len`` counts and iteration yields exactly the stored keys, as bytes."""
    expected = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(25)}
    for key, value in expected.items():
        db[key] = value
    assert len(db) == 25
    keys = list(db)
    assert all(type(k) is bytes for k in keys)
    assert sorted(keys) == sorted(expected)
    assert dict(db.items()) == expected


def test_empty_mapping_has_no_keys(db: SqliteDbm) -> None:
    """A freshly created database is an empty mapping."""
    assert len(db) == 0
    assert list(db) == []


def test_missing_key_raises_key_error_naming_the_key(db: SqliteDbm) -> None:
    """Reading a missing key raises KeyError carrying that key."""
    with pytest.raises(KeyError) as info:
        db[b"nope"]
    assert info.value.args == (b"nope",)


def test_deleting_a_missing_key_raises_key_error(db: SqliteDbm) -> None:
    """Deleting a key that is not stored raises KeyError and changes nothing."""
    db[b"alpha"] = b"one"
    with pytest.raises(KeyError):
        del db[b"nope"]
    assert dict(db.items()) == {b"alpha": b"one"}


def test_mapping_mixins_follow_the_contract(db: SqliteDbm) -> None:
    """get, setdefault and pop inherited from MutableMapping behave like a dict's."""
    assert db.get(b"a") is None
    assert db.get(b"a", b"dflt") == b"dflt"
    assert db.setdefault(b"a", b"1") == b"1"
    assert db.setdefault(b"a", b"2") == b"1"
    assert db.pop(b"a") == b"1"
    assert b"a" not in db
    assert db.pop(b"a", b"gone") == b"gone"


@pytest.mark.parametrize("key", ["plain", "clé-ünïcode", ""], ids=["ascii", "non-ascii", "empty"])
def test_str_key_is_stored_as_its_utf8_bytes(db: SqliteDbm, db_path: Path, key: str) -> None:
    """A str key is stored as a UTF-8 BLOB and reads back as bytes, as dbm.sqlite3 does on 3.13."""
    db[key] = b"v"
    assert db[key] == b"v"
    assert db[key.encode()] == b"v"
    assert key in db and key.encode() in db
    assert list(db) == [key.encode()]
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT typeof(key), key FROM Dict").fetchall() == [("blob", key.encode())]
    del db[key]
    assert len(db) == 0


def test_str_value_is_stored_and_read_back_as_bytes(db: SqliteDbm) -> None:
    """A str value is stored as a BLOB and reads back as its UTF-8 bytes, like dbm.sqlite3."""
    db[b"k"] = "välue"
    assert db[b"k"] == "välue".encode()


def test_binary_keys_and_values_survive_unchanged(db: SqliteDbm) -> None:
    """Keys and values with NUL and high bytes are stored byte for byte."""
    key, value = bytes(range(256)), b"\x00\xff" * 1000
    db[key] = value
    assert db[key] == value
    assert key[:-1] not in db


def test_each_write_commits_at_once(db: SqliteDbm, db_path: Path) -> None:
    """A write that returned is visible to an independent connection without closing or syncing."""
    db[b"k"] = b"v1"
    assert _plain_rows(db_path) == {b"k": b"v1"}
    db[b"k"] = b"v2"
    del db[b"k"]
    assert _plain_rows(db_path) == {}


def test_writes_inside_a_shared_transaction_roll_back_with_it(db_path: Path) -> None:
    """On a shared connection, mapping writes and another table's rows commit or roll back together."""
    conn = connect(db_path)
    try:
        mapping = SqliteDbm(conn)
        conn.execute("CREATE TABLE idx (job TEXT)")
        conn.execute("BEGIN IMMEDIATE")
        mapping[b"job-1"] = b"snapshot"
        conn.execute("INSERT INTO idx VALUES ('job-1')")
        conn.execute("ROLLBACK")
        assert b"job-1" not in mapping
        conn.execute("BEGIN IMMEDIATE")
        mapping[b"job-2"] = b"snapshot"
        conn.execute("INSERT INTO idx VALUES ('job-2')")
        assert _plain_rows(db_path) == {}  # not visible to others before the commit
        conn.execute("COMMIT")
        assert _plain_rows(db_path) == {b"job-2": b"snapshot"}
    finally:
        conn.close()


def test_close_of_a_borrowed_connection_leaves_it_open(db_path: Path) -> None:
    """Closing a mapping that does not own its connection detaches it but keeps the connection usable."""
    conn = connect(db_path)
    try:
        mapping = SqliteDbm(conn, owns_connection=False)
        mapping[b"k"] = b"v"
        mapping.close()
        assert conn.execute("SELECT value FROM Dict").fetchone() == (b"v",)
        with pytest.raises(ValueError, match="closed"):
            mapping[b"k"]
    finally:
        conn.close()


def test_close_of_an_owned_connection_closes_it(db_path: Path) -> None:
    """A mapping from open() owns its connection, closes it, and refuses use afterwards."""
    mapping = sqlite_dbm.open(db_path, "c")
    conn = mapping.conn
    with mapping:
        mapping[b"k"] = b"v"
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    with pytest.raises(ValueError, match="closed"):
        mapping[b"k"] = b"v"
    with pytest.raises(ValueError, match="closed"):
        len(mapping)
    mapping.close()  # a second close is harmless


# --- open() flags ----------------------------------------------------------------------------


def test_flag_c_creates_an_empty_database(db_path: Path) -> None:
    """Flag 'c' on a missing path creates the file with an empty Dict table."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        assert len(mapping) == 0
    assert db_path.is_file()
    assert _plain_rows(db_path) == {}


def test_flag_c_keeps_existing_data(db_path: Path) -> None:
    """Flag 'c' on an existing database opens it without losing anything."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        mapping[b"k"] = b"v"
    with sqlite_dbm.open(db_path, "c") as mapping:
        assert dict(mapping.items()) == {b"k": b"v"}


def test_flag_w_opens_an_existing_database_for_writing(db_path: Path) -> None:
    """Flag 'w' on an existing database reads and writes it."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        mapping[b"old"] = b"1"
    with sqlite_dbm.open(db_path, "w") as mapping:
        assert mapping[b"old"] == b"1"
        mapping[b"new"] = b"2"
    assert _plain_rows(db_path) == {b"old": b"1", b"new": b"2"}


@pytest.mark.parametrize("flag", ["r", "w"], ids=["read-only", "write"])
def test_flag_without_create_on_missing_file_raises(db_path: Path, flag: str) -> None:
    """Flags 'r' and 'w' on a missing path raise FileNotFoundError and create nothing."""
    with pytest.raises(FileNotFoundError):
        sqlite_dbm.open(db_path, flag)
    assert list(db_path.parent.iterdir()) == []


def test_flag_n_truncates_an_existing_database(db_path: Path) -> None:
    """Flag 'n' discards every key of an existing database and leaves it writable."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        for i in range(10):
            mapping[f"k{i}".encode()] = b"v"
    with sqlite_dbm.open(db_path, "n") as mapping:
        assert len(mapping) == 0
        mapping[b"fresh"] = b"1"
    assert _plain_rows(db_path) == {b"fresh": b"1"}


def test_flag_r_reads_but_refuses_writes(db_path: Path) -> None:
    """Flag 'r' reads existing keys; a set or delete raises sqlite3.OperationalError and changes nothing."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        mapping[b"k"] = b"v"
    with sqlite_dbm.open(db_path, "r") as mapping:
        assert mapping[b"k"] == b"v"
        assert list(mapping) == [b"k"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            mapping[b"k"] = b"changed"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            mapping[b"other"] = b"x"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            del mapping[b"k"]
    assert _plain_rows(db_path) == {b"k": b"v"}


@pytest.mark.parametrize("flag", ["x", "", "rw", "C", "rc"], ids=["x", "empty", "rw", "upper-C", "rc"])
def test_bad_flag_raises_value_error(db_path: Path, flag: str) -> None:
    """An unknown flag raises ValueError before any file is touched."""
    with pytest.raises(ValueError, match="flag"):
        sqlite_dbm.open(db_path, flag)
    assert not db_path.exists()


@pytest.mark.parametrize("name", ["with space.db", "odd?name.db", "odd#name.db", "odd%41name.db"],
                         ids=["space", "question-mark", "hash", "percent-escape"])
def test_path_with_uri_special_characters_opens_that_exact_file(tmp_path: Path, name: str) -> None:
    """A path containing URI metacharacters names the database file itself, not a truncated or decoded one."""
    path = tmp_path / name
    with sqlite_dbm.open(path, "c") as mapping:
        mapping[b"k"] = b"v"
    with sqlite_dbm.open(path, "r") as mapping:
        assert mapping[b"k"] == b"v"
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            mapping[b"k"] = b"w"
    # No stray database under a truncated or percent-decoded name (a read-only close may leave -wal/-shm).
    names = {p.name for p in tmp_path.iterdir()}
    assert name in names
    assert names <= {name, f"{name}-wal", f"{name}-shm"}
    assert _plain_rows(path) == {b"k": b"v"}


# --- file mode and connection settings -------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
@pytest.mark.parametrize("flag", ["c", "n"])
def test_created_database_files_are_owner_only(db_path: Path, flag: str, umask: int) -> None:
    """The database file and its -wal and -shm files are created with mode 0o600 whatever the umask."""
    old = os.umask(umask)
    try:
        mapping = sqlite_dbm.open(db_path, flag)
    finally:
        os.umask(old)
    with mapping:
        mapping[b"k"] = b"v"
        for suffix in ("", "-wal", "-shm"):
            mode = stat.S_IMODE(os.stat(f"{db_path}{suffix}").st_mode)
            assert mode == 0o600, f"{db_path.name}{suffix} has mode {oct(mode)}"


def test_connect_sets_wal_full_sync_and_busy_timeout(db_path: Path) -> None:
    """A connection from connect() is in WAL mode with synchronous=FULL, a busy timeout and autocommit."""
    conn = connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # 2 == FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone() == (sqlite_dbm.BUSY_TIMEOUT_MS,)
        assert conn.isolation_level is None
        assert not conn.in_transaction
    finally:
        conn.close()


def test_wal_mode_is_persistent_in_the_file(db_path: Path) -> None:
    """After open() the file itself is in WAL mode, so a plain connection also sees journal_mode=wal."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        mapping[b"k"] = b"v"
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_read_only_connect_uses_full_sync(db_path: Path) -> None:
    """A read-only connection also runs with synchronous=FULL and cannot write."""
    with sqlite_dbm.open(db_path, "c"):
        pass
    conn = connect(db_path, readonly=True)
    try:
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO Dict VALUES (x'00', x'00')")
    finally:
        conn.close()


# --- crashes and concurrency -----------------------------------------------------------------

_CRASH_AFTER_COMMITS = textwrap.dedent("""
    import os, signal, sys
    from jobq.local import sqlite_dbm
    path, n = sys.argv[1], int(sys.argv[2])
    db = sqlite_dbm.open(path, "c")
    for i in range(n):
        db[b"key-%d" % i] = b"value-%d" % i
    print("done", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("reader_flag", ["r", "w"], ids=["read-only-reader", "writer-reader"])
def test_committed_writes_survive_sigkill(children, db_path: Path, reader_flag: str) -> None:
    """Every write a child made before it was SIGKILLed is in the file when reopened."""
    n = 300
    proc = children.run(_CRASH_AFTER_COMMITS, str(db_path), str(n), timeout=CHILD_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "done\n"
    assert Path(f"{db_path}-wal").exists()  # the child died without checkpointing
    with sqlite_dbm.open(db_path, reader_flag) as mapping:
        assert len(mapping) == n
        assert dict(mapping.items()) == {b"key-%d" % i: b"value-%d" % i for i in range(n)}


_CRASH_INSIDE_TRANSACTION = textwrap.dedent("""
    import os, signal, sys
    from jobq.local import sqlite_dbm
    db = sqlite_dbm.open(sys.argv[1], "c")
    db[b"committed"] = b"yes"
    db.conn.execute("BEGIN IMMEDIATE")
    for i in range(50):
        db[b"uncommitted-%d" % i] = b"no"
    print("in transaction", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_sigkill_inside_a_transaction_loses_only_that_transaction(children, db_path: Path) -> None:
    """A child killed before COMMIT leaves its earlier commits and none of the open transaction's writes."""
    proc = children.run(_CRASH_INSIDE_TRANSACTION, str(db_path), timeout=CHILD_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout == "in transaction\n"
    with sqlite_dbm.open(db_path, "w") as mapping:
        assert dict(mapping.items()) == {b"committed": b"yes"}
        assert mapping.conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


_CONCURRENT_WRITER = textwrap.dedent("""
    import os, sys, time
    from jobq.local import sqlite_dbm
    path, go, worker, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(go):  # start file: every writer begins at once
        if time.monotonic() > deadline:
            sys.exit("no start signal")
        time.sleep(0.001)
    with sqlite_dbm.open(path, "c") as db:
        for i in range(n):
            db[b"w%d-k%d" % (worker, i)] = b"w%d-v%d" % (worker, i)
    print("finished", flush=True)
""")


def test_concurrent_writers_lose_nothing(children, tmp_path: Path, db_path: Path) -> None:
    """Four processes writing 500 distinct keys each at once leave all 2000 keys and a sound file."""
    workers, n = 4, 500
    sqlite_dbm.open(db_path, "c").close()  # the creation race has its own test below
    go = tmp_path / "go"
    procs = [children.start(_CONCURRENT_WRITER, str(db_path), str(go), str(w), str(n))
             for w in range(workers)]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n"
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
        assert proc.returncode == 0, err
        assert out == "finished\n"
    expected = {b"w%d-k%d" % (w, i): b"w%d-v%d" % (w, i) for w in range(workers) for i in range(n)}
    with sqlite_dbm.open(db_path, "r") as mapping:
        assert len(mapping) == workers * n
        assert dict(mapping.items()) == expected
        assert mapping.conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def _open_fresh_databases(directory: str, worker: int, rounds: int, barrier, results) -> None:
    """Child: in each round, open the round's new database together with the other children."""
    failures = []
    for r in range(rounds):
        barrier.wait(CHILD_TIMEOUT)
        try:
            with sqlite_dbm.open(os.path.join(directory, f"round-{r}.sqlite3"), "c") as mapping:
                mapping[b"worker-%d" % worker] = b"here"
        except Exception as exc:  # reported to the parent, which asserts there were none
            failures.append(f"round {r}: {type(exc).__name__}: {exc}")
    results.put((worker, failures))


def test_concurrent_first_opens_of_a_new_database_all_succeed(tmp_path: Path) -> None:
    """Four processes that open('c') the same not-yet-existing database at once all succeed, in 100 rounds."""
    workers, rounds = 4, 100
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_open_fresh_databases,
                         args=(str(tmp_path), w, rounds, barrier, results)) for w in range(workers)]
    try:
        for proc in procs:
            proc.start()
        reports = dict(results.get(timeout=CHILD_TIMEOUT) for _ in procs)
        for proc in procs:
            proc.join(CHILD_TIMEOUT)
    finally:
        for proc in procs:
            if proc.pid is not None:
                if proc.is_alive():
                    proc.kill()
                proc.join(CHILD_TIMEOUT)
        results.close()
        results.join_thread()
    assert [proc.exitcode for proc in procs] == [0] * workers
    failures = [f"worker {w} {line}" for w, lines in sorted(reports.items()) for line in lines]
    assert failures == [], f"{len(failures)} of {workers * rounds} opens failed, first: {failures[:3]}"
    for r in range(rounds):
        rows = _plain_rows(tmp_path / f"round-{r}.sqlite3")
        assert rows == {b"worker-%d" % w: b"here" for w in range(workers)}


# --- compatibility with the standard dbm.sqlite3 of Python 3.13 ------------------------------

_STDLIB_READER = textwrap.dedent("""
    import dbm.sqlite3, json, sys
    db = dbm.sqlite3.open(sys.argv[1], "r")
    try:
        print(json.dumps({k.hex(): db[k].hex() for k in db}))
    finally:
        db.close()
""")

_STDLIB_WRITER = textwrap.dedent("""
    import dbm.sqlite3, sys
    db = dbm.sqlite3.open(sys.argv[1], "c")
    try:
        db[b"bytes-key"] = b"bytes-value"
        db["str-key"] = "str-value"
        db["clé"] = b"\\x00\\xff"
        db[b"overwritten"] = b"old"
        db[b"overwritten"] = b"new"
        db[b"deleted"] = b"x"
        del db[b"deleted"]
    finally:
        db.close()
    print("written", flush=True)
""")


def test_stdlib_dbm_sqlite3_reads_what_jobq_wrote(py313: Path, db_path: Path) -> None:
    """Python 3.13's dbm.sqlite3 reads back every key and value jobq.local.sqlite_dbm wrote."""
    with sqlite_dbm.open(db_path, "c") as mapping:
        mapping[b"bytes-key"] = b"bytes-value"
        mapping["str-key"] = "str-value"
        mapping["clé"] = b"\x00\xff"
        mapping[bytes(range(256))] = b"all bytes"
    proc = _run_py313(py313, _STDLIB_READER, str(db_path))
    assert proc.returncode == 0, proc.stderr
    seen = {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.loads(proc.stdout).items()}
    assert seen == {
        b"bytes-key": b"bytes-value",
        b"str-key": b"str-value",
        "clé".encode(): b"\x00\xff",
        bytes(range(256)): b"all bytes",
    }


def test_jobq_reads_what_stdlib_dbm_sqlite3_wrote(py313: Path, db_path: Path) -> None:
    """jobq.local.sqlite_dbm reads a file written by Python 3.13's dbm.sqlite3, str keys coming back as bytes."""
    proc = _run_py313(py313, _STDLIB_WRITER, str(db_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "written\n"
    with sqlite_dbm.open(db_path, "r") as mapping:
        assert dict(mapping.items()) == {
            b"bytes-key": b"bytes-value",
            b"str-key": b"str-value",
            "clé".encode(): b"\x00\xff",
            b"overwritten": b"new",
        }
        assert mapping["str-key"] == b"str-value"
    with sqlite_dbm.open(db_path, "w") as mapping:  # and can keep writing to it
        mapping[b"added-by-jobq"] = b"1"
    proc = _run_py313(py313, _STDLIB_READER, str(db_path))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[b"added-by-jobq".hex()] == b"1".hex()


def test_uri_path_percent_encodes_as_urllib_does() -> None:
    """connect's own encoder (urllib.parse is not imported as a worker starts) gives the same
    text as urllib.parse.quote_from_bytes, byte for byte."""
    import random
    import urllib.parse

    rng = random.Random(19)
    samples = [bytes(range(256)), b"", "/tmp/é ?#%&=+;:@".encode()]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))
                for _ in range(2000)]
    for raw in samples:
        assert sqlite_dbm.uri_path(raw) == urllib.parse.quote_from_bytes(raw)

