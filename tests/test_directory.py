"""Opening a queue directory: creation, permissions, format and key checks."""

from __future__ import annotations

import json
import os
import stat

import pytest
from structlog.testing import capture_logs

from jobq import Queue
from jobq.errors import IncompatibleFormat, NotAQueue, StorageError, WrongSecretKey

from jobtasks import add

KEY = "correct horse battery staple"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_created_owner_only(qpath):
    """The directory and every file in it are created 0700 / 0600."""
    with Queue(qpath) as q:
        q.enqueue(add, 1, 2)
        q.counts()
    assert _mode(qpath) == 0o700
    for path in qpath.rglob("*"):
        assert _mode(path) == (0o700 if path.is_dir() else 0o600), path


def test_newer_on_disk_format_is_refused(qpath):
    """A directory written by a newer format raises IncompatibleFormat naming both formats."""
    Queue(qpath).close()
    info = json.loads((qpath / "jobq.json").read_text())
    (qpath / "jobq.json").write_text(json.dumps({**info, "format": 4}))
    with pytest.raises(IncompatibleFormat, match="format 4.*format 3") as err:
        Queue(qpath)
    assert (err.value.found, err.value.supported) == (4, 3)


def test_a_format_1_directory_is_read_and_upgraded_in_place(qpath):
    """Format 1 segments end at their last record, without zero fill: read as they are. The
    format file then says 2, so that a jobq of format 1 refuses the zero fill it cannot read."""
    with Queue(qpath) as q:
        old = [q.enqueue(add, i, i) for i in range(3)]
        end = q.log.end()
    segment = qpath / "log" / f"{end.segment:012d}.log"
    os.truncate(segment, end.offset)  # as format 1 wrote it
    info = json.loads((qpath / "jobq.json").read_text())
    (qpath / "jobq.json").write_text(json.dumps({**info, "format": 1}))
    with capture_logs() as events, Queue(qpath) as q:
        assert json.loads((qpath / "jobq.json").read_text()) == {**info, "format": 2}
        assert [e["found"] for e in events if e["event"] == "queue.format_upgraded"] == [1]
        new = q.enqueue(add, 9, 9)
        assert [s.job_id for s in q.jobs()] == [*old, new]
        assert q.store.quarantined() == []
        assert segment.stat().st_size > q.log.end().offset  # zero fill after the new record


def test_non_queue_directory_is_not_taken_over(tmp_path):
    """A non-empty directory without jobq.json, or a file, is refused and left untouched."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NotAQueue, match="not empty"):
        Queue(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    with pytest.raises(NotAQueue, match="not a directory"):
        Queue(tmp_path / "notes.txt")


def test_existing_empty_directory_becomes_a_queue(tmp_path):
    """An empty directory (for example made by mktemp -d) is initialised in place."""
    with Queue(tmp_path) as q:
        assert q.result(_run(q, q.enqueue(add, 1, 1))) == 2


def _run(q, jid):
    from jobq.testing import run_burst
    run_burst(q)
    return jid


def test_secret_key_must_match(qpath):
    """A signed queue opens only with its key; an unsigned one refuses a key."""
    with Queue(qpath, secret_key=KEY) as q:
        jid = q.enqueue(add, 1, 2)
    with pytest.raises(WrongSecretKey, match="secret_key"):
        Queue(qpath)
    with pytest.raises(WrongSecretKey, match="different secret key"):
        Queue(qpath, secret_key=KEY + "!")
    with Queue(qpath, secret_key=KEY) as q:
        assert q.result(_run(q, jid)) == 3
    with pytest.raises(WrongSecretKey, match="without a secret key"):
        Queue(qpath.parent / "plain").close() or Queue(qpath.parent / "plain", secret_key=KEY)


def test_secret_key_from_environment(qpath, monkeypatch):
    """JOBQ_SECRET_KEY supplies the key when none is passed."""
    monkeypatch.setenv("JOBQ_SECRET_KEY", KEY)
    with Queue(qpath) as q:
        q.enqueue(add, 1, 2)
    monkeypatch.delenv("JOBQ_SECRET_KEY")
    with pytest.raises(WrongSecretKey):
        Queue(qpath)


def test_short_secret_key_is_a_config_error(qpath):
    """Keys shorter than 16 bytes are refused before anything is created."""
    from jobq.errors import ConfigError
    with pytest.raises(ConfigError, match="16 bytes"):
        Queue(qpath, secret_key="short")
    assert not qpath.exists()


def test_uncreatable_directory_is_a_storage_error(tmp_path):
    """A queue path under a regular file cannot be created: StorageError naming the path."""
    (tmp_path / "plainfile").write_text("")
    with pytest.raises(StorageError, match="cannot use queue directory") as info:
        Queue(tmp_path / "plainfile" / "q")
    assert info.value.path == str(tmp_path / "plainfile" / "q")


def test_processes_creating_the_same_queue_at_once_all_open_it(tmp_path, children):
    """Workers and producers started together on a new directory: the first to write the
    format file wins, the others read it (each once saw the others' temporary files)."""
    import time
    code = ("import sys, time; from jobq import Queue; t = float(sys.argv[2])\n"
            "time.sleep(max(0.0, t - time.time())); Queue(sys.argv[1]).close()")
    for attempt in range(3):
        qpath, start = tmp_path / f"q{attempt}", time.time() + 1.0
        procs = [children.start(code, str(qpath), str(start)) for _ in range(6)]
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        assert json.loads((qpath / "jobq.json").read_text())["format"] == 2
        assert not [p.name for p in qpath.iterdir() if ".tmp." in p.name]


def test_a_queue_knows_whether_opening_it_created_it(tmp_path):
    """What lets ``jobq worker`` warn that it watches a queue it just made."""
    with Queue(tmp_path / "q") as first:
        assert first.created
    with Queue(tmp_path / "q") as again:
        assert not again.created
