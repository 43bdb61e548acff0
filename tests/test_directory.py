"""Opening a queue directory: creation, permissions, format and key checks."""

from __future__ import annotations

import json
import stat

import pytest

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
    (qpath / "jobq.json").write_text(json.dumps({**info, "format": 2}))
    with pytest.raises(IncompatibleFormat, match="format 2.*format 1") as err:
        Queue(qpath)
    assert (err.value.found, err.value.supported) == (2, 1)


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
