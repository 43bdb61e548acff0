"""Tests for jobq.local.shelf.StateShelf: pickling through jobq.pickling, HMAC signing and verification."""

from __future__ import annotations

import datetime
import importlib
import json
import os
import pickle
import pickletools
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from jobq.local import sqlite_dbm
from jobq.errors import CorruptRecord, LoadError, UnpicklingForbidden
from jobq.pickling import PickleRules
from jobq.local.shelf import SIGNED_MAGIC, StateShelf
from jobq.state import JobState, Status

PY313 = Path("/root/.pyenv/versions/3.13.0/bin/python3.13")
SECRET = b"0123456789abcdef-test-secret"
OTHER_SECRET = b"fedcba9876543210-other-secret"
MAC_SIZE = 32
CHILD_TIMEOUT = 60

# Every Tripwire that gets unpickled appends its tag here: proof that a value was (or was not) loaded.
UNPICKLED: list[str] = []


class Tripwire:
    """A value whose unpickling has a visible side effect."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __getstate__(self) -> dict[str, str]:
        return {"tag": self.tag}

    def __setstate__(self, state: dict[str, str]) -> None:
        UNPICKLED.append(state["tag"])
        self.tag = state["tag"]


class SystemCall:
    """Pickles as a call to os.system: what a hostile record would contain."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


@pytest.fixture(autouse=True)
def clear_tripwire():
    UNPICKLED.clear()
    yield
    UNPICKLED.clear()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite3"


def _open_shelf(path: Path, **kwargs) -> StateShelf:
    return StateShelf(sqlite_dbm.open(path, "c"), **kwargs)


@pytest.fixture
def plain_shelf(db_path: Path):
    shelf = _open_shelf(db_path)
    yield shelf
    shelf.close()


@pytest.fixture
def signed_shelf(db_path: Path):
    shelf = _open_shelf(db_path, secret_key=SECRET)
    yield shelf
    shelf.close()


def _read_raw(path: Path, key: str) -> bytes:
    """The stored value of ``key``, read with a plain sqlite3 connection."""
    with closing(sqlite3.connect(path)) as conn:
        row = conn.execute("SELECT value FROM Dict WHERE key = ?", (key.encode(),)).fetchone()
    assert row is not None, f"no row for {key!r}"
    return row[0]


def _write_raw(path: Path, key: str, value: bytes) -> None:
    """Store ``value`` under ``key`` with a plain sqlite3 connection: a real change to the file."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("REPLACE INTO Dict (key, value) VALUES (?, ?)", (key.encode(), value))


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


def _job_state() -> JobState:
    return JobState(job_id="job-1", task="workers.tasks:add", status=Status.RUNNING, attempts=2,
                    progress=0.5, checkpoint={"step": 3}, error="boom", errors=["boom"],
                    enqueued_at=1.0, run_at=2.0, started_at=3.0, updated_at=4.0)


VALUES = [
    pytest.param({"a": 1, "b": [1, 2, {"c": (3, 4)}]}, id="dict"),
    pytest.param(_job_state(), id="job-state"),
    pytest.param(None, id="none"),
    pytest.param([b"\x00\xff", "tëxt", 1.5, {1, 2}], id="list-of-mixed"),
    pytest.param(datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), id="datetime"),
]


# --- unsigned shelf --------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
def test_unsigned_round_trip(plain_shelf: StateShelf, value: object) -> None:
    """A picklable value stored under a str key reads back equal, with the same type."""
    plain_shelf["job-1"] = value
    loaded = plain_shelf["job-1"]
    assert loaded == value
    assert type(loaded) is type(value)


def test_job_state_round_trip_restores_the_status_enum(plain_shelf: StateShelf) -> None:
    """A JobState comes back with every field equal and its status as a Status member."""
    plain_shelf["job-1"] = _job_state()
    loaded = plain_shelf["job-1"]
    assert loaded == _job_state()
    assert loaded.status is Status.RUNNING
    assert loaded.checkpoint == {"step": 3}


@pytest.mark.parametrize("value", VALUES)
def test_unsigned_value_is_a_plain_pickle(plain_shelf: StateShelf, db_path: Path, value: object) -> None:
    """Without a key the stored bytes are a protocol-5 pickle that plain pickle.loads reads."""
    plain_shelf["job-1"] = value
    raw = _read_raw(db_path, "job-1")
    assert raw == plain_shelf.raw("job-1")
    assert not raw.startswith(SIGNED_MAGIC)
    assert raw[:2] == b"\x80\x05"
    assert pickle.loads(raw) == value


def test_values_persist_across_reopen(db_path: Path) -> None:
    """Values written by one shelf are read by a new shelf on the same file."""
    with _open_shelf(db_path) as shelf:
        shelf["job-1"] = {"n": 1}
        shelf["job-2"] = _job_state()
    with StateShelf(sqlite_dbm.open(db_path, "r")) as shelf:
        assert shelf["job-1"] == {"n": 1}
        assert shelf["job-2"] == _job_state()


def test_shelf_mapping_operations_use_str_keys(plain_shelf: StateShelf, db_path: Path) -> None:
    """Keys are UTF-8 encoded in the table and come back as str from iteration, in and del."""
    plain_shelf["jöb-ü"] = 1
    plain_shelf["job-2"] = 2
    assert sorted(plain_shelf) == ["job-2", "jöb-ü"]
    assert "jöb-ü" in plain_shelf and "job-3" not in plain_shelf
    assert len(plain_shelf) == 2
    with closing(sqlite3.connect(db_path)) as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM Dict")}
    assert keys == {"jöb-ü".encode(), b"job-2"}
    del plain_shelf["jöb-ü"]
    assert list(plain_shelf) == ["job-2"]
    with pytest.raises(KeyError):
        plain_shelf["jöb-ü"]
    assert plain_shelf.get("missing") is None


def test_overwrite_replaces_the_stored_value(plain_shelf: StateShelf) -> None:
    """Storing to an existing key replaces the value."""
    plain_shelf["job-1"] = {"v": 1}
    plain_shelf["job-1"] = {"v": 2}
    assert plain_shelf["job-1"] == {"v": 2}
    assert len(plain_shelf) == 1


# --- signed shelf ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", VALUES)
def test_signed_round_trip(signed_shelf: StateShelf, value: object) -> None:
    """With a secret key a value still reads back equal."""
    signed_shelf["job-1"] = value
    assert signed_shelf["job-1"] == value


def test_signed_value_layout_is_magic_mac_then_pickle(signed_shelf: StateShelf, db_path: Path) -> None:
    """A signed value is JQS1, a 32-byte MAC, then the plain pickle of the value."""
    signed_shelf["job-1"] = {"a": 1}
    raw = _read_raw(db_path, "job-1")
    assert raw.startswith(b"JQS1")
    assert pickle.loads(raw[4 + MAC_SIZE:]) == {"a": 1}
    assert len(raw) == 4 + MAC_SIZE + len(pickle.dumps({"a": 1}, protocol=5))


def test_intact_signed_tripwire_is_unpickled(signed_shelf: StateShelf) -> None:
    """Control for the corruption tests: an untouched signed Tripwire does get unpickled."""
    signed_shelf["job-1"] = Tripwire("intact")
    assert signed_shelf["job-1"].tag == "intact"
    assert UNPICKLED == ["intact"]


def _flip_at(index: int):
    return lambda raw: _flip(raw, index)


MUTATIONS = [
    pytest.param(_flip_at(0), id="magic-first-byte"),
    pytest.param(_flip_at(3), id="magic-last-byte"),
    pytest.param(_flip_at(4), id="mac-first-byte"),
    pytest.param(_flip_at(4 + MAC_SIZE - 1), id="mac-last-byte"),
    pytest.param(_flip_at(4 + MAC_SIZE), id="payload-first-byte"),
    pytest.param(lambda raw: _flip(raw, (4 + MAC_SIZE + len(raw)) // 2), id="payload-middle-byte"),
    pytest.param(_flip_at(-1), id="payload-last-byte"),
    pytest.param(lambda raw: raw[:-1], id="payload-truncated"),
    pytest.param(lambda raw: raw + b".", id="byte-appended"),
    pytest.param(lambda raw: raw[:4] + raw[4 + MAC_SIZE:], id="mac-removed"),
    pytest.param(lambda raw: raw[:4] + bytes(MAC_SIZE) + raw[4 + MAC_SIZE:], id="mac-zeroed"),
]


@pytest.mark.parametrize("mutate", MUTATIONS)
def test_tampered_signed_value_raises_corrupt_record_without_unpickling(
        signed_shelf: StateShelf, db_path: Path, mutate) -> None:
    """A stored signed value changed in the file raises CorruptRecord and is never unpickled."""
    signed_shelf["job-1"] = Tripwire("tampered")
    raw = _read_raw(db_path, "job-1")
    tampered = mutate(raw)
    assert tampered != raw
    _write_raw(db_path, "job-1", tampered)
    with pytest.raises(CorruptRecord) as info:
        signed_shelf["job-1"]
    assert info.value.job_id == "job-1"
    assert UNPICKLED == []


def test_every_single_byte_flip_is_detected(signed_shelf: StateShelf, db_path: Path) -> None:
    """Flipping any one byte of a stored signed value raises CorruptRecord and never unpickles it."""
    signed_shelf["job-1"] = Tripwire("flip")
    raw = _read_raw(db_path, "job-1")
    undetected = []
    for index in range(len(raw)):
        _write_raw(db_path, "job-1", _flip(raw, index))
        try:
            signed_shelf["job-1"]
        except CorruptRecord:
            continue
        undetected.append(index)
    assert undetected == []
    assert UNPICKLED == []
    _write_raw(db_path, "job-1", raw)  # the original bytes still verify
    assert signed_shelf["job-1"].tag == "flip"


def test_value_copied_to_another_key_fails_verification(signed_shelf: StateShelf, db_path: Path) -> None:
    """A validly signed value copied under another key raises CorruptRecord there and is not unpickled."""
    signed_shelf["job-a"] = Tripwire("a")
    signed_shelf["job-b"] = Tripwire("b")
    _write_raw(db_path, "job-b", _read_raw(db_path, "job-a"))
    with pytest.raises(CorruptRecord):
        signed_shelf["job-b"]
    assert UNPICKLED == []
    assert signed_shelf["job-a"].tag == "a"  # the original is still valid
    assert UNPICKLED == ["a"]


def test_value_signed_with_another_key_is_refused(db_path: Path) -> None:
    """A shelf refuses, without unpickling, a value signed under a different secret key."""
    with _open_shelf(db_path, secret_key=OTHER_SECRET) as other:
        other["job-1"] = Tripwire("other")
    with _open_shelf(db_path, secret_key=SECRET) as shelf:
        with pytest.raises(CorruptRecord):
            shelf["job-1"]
    assert UNPICKLED == []


def test_shelf_without_key_refuses_a_signed_value(db_path: Path) -> None:
    """A shelf opened without a secret key raises CorruptRecord on a signed value and does not unpickle it."""
    with _open_shelf(db_path, secret_key=SECRET) as shelf:
        shelf["job-1"] = Tripwire("signed")
    with _open_shelf(db_path) as shelf:
        with pytest.raises(CorruptRecord, match="signed"):
            shelf["job-1"]
    assert UNPICKLED == []


def test_signed_shelf_refuses_an_unsigned_value(db_path: Path) -> None:
    """A shelf with a secret key raises CorruptRecord on an unsigned value and does not unpickle it."""
    with _open_shelf(db_path) as shelf:
        shelf["job-1"] = Tripwire("unsigned")
    assert pickle.loads(_read_raw(db_path, "job-1")).tag == "unsigned"  # it is a loadable pickle
    UNPICKLED.clear()
    with _open_shelf(db_path, secret_key=SECRET) as shelf:
        with pytest.raises(CorruptRecord, match="not signed"):
            shelf["job-1"]
    assert UNPICKLED == []


# --- pickling rules: allow-list and module remap ---------------------------------------------


def _system_pickle(command: str) -> bytes:
    return pickle.dumps(SystemCall(command), protocol=5)


def test_hostile_pickle_payload_is_live(tmp_path: Path) -> None:
    """Control for the allow-list test: the crafted bytes really run os.system under plain pickle."""
    marker = tmp_path / "control"
    data = _system_pickle(f"echo pwned > '{marker}'")
    strings = {arg for _op, arg, _pos in pickletools.genops(data) if isinstance(arg, str)}
    assert {os.system.__module__, "system"} <= strings
    assert pickle.loads(data) == 0
    assert marker.read_text() == "pwned\n"


@pytest.mark.parametrize("secret_key", [None, SECRET], ids=["unsigned", "signed"])
def test_allow_list_refuses_a_global_outside_it(tmp_path: Path, db_path: Path,
                                                secret_key: bytes | None) -> None:
    """A stored pickle that calls os.system raises UnpicklingForbidden under an allow-list and never runs."""
    marker = tmp_path / "pwned"
    rules = PickleRules.build(allowed_modules=["json"])
    with _open_shelf(db_path, rules=rules, secret_key=secret_key) as shelf:
        shelf["job-ok"] = {"plain": [1, 2]}
        shelf["job-state"] = _job_state()
        if secret_key is None:
            _write_raw(db_path, "job-evil", _system_pickle(f"echo pwned > '{marker}'"))
        else:  # a signed hostile value: the key holder wrote it, the allow-list must still hold
            shelf["job-evil"] = SystemCall(f"echo pwned > '{marker}'")
        assert shelf["job-ok"] == {"plain": [1, 2]}  # the allow-list does not refuse everything
        assert shelf["job-state"] == _job_state()  # jobq's own classes are always admitted
        with pytest.raises(UnpicklingForbidden) as info:
            shelf["job-evil"]
    assert info.value.name == "system"
    assert not marker.exists()


@pytest.fixture
def module_dir(tmp_path: Path):
    """A directory on sys.path for throwaway modules; removes them from sys.path and sys.modules after."""
    directory = tmp_path / "modules"
    directory.mkdir()
    sys.path.insert(0, str(directory))
    created: list[str] = []

    def write_module(name: str, source: str) -> None:
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        created.append(name)

    yield directory, write_module
    sys.path.remove(str(directory))
    for name in created:
        sys.modules.pop(name, None)
    importlib.invalidate_caches()


_WIDGET_SOURCE = """
    class Widget:
        def __init__(self, size):
            self.size = size
"""


def _moved_widget_pickle(module_dir, write_module) -> tuple[bytes, str, str]:
    """Pickle a Widget from an old module, then delete that module: only a remap can load it now."""
    suffix = uuid.uuid4().hex
    old, new = f"jobq_test_old_{suffix}", f"jobq_test_new_{suffix}"
    write_module(old, _WIDGET_SOURCE)
    data = pickle.dumps(importlib.import_module(old).Widget(7), protocol=5)
    (module_dir / f"{old}.py").unlink()
    sys.modules.pop(old)
    importlib.invalidate_caches()
    write_module(new, _WIDGET_SOURCE)
    return data, old, new


@pytest.mark.parametrize("allow", [False, True], ids=["unrestricted", "new-module-allow-listed"])
def test_remap_loads_a_moved_class_from_its_new_module(module_dir, db_path: Path, allow: bool) -> None:
    """A pickle naming a moved module loads as the new module's class when the rules remap it."""
    directory, write_module = module_dir
    data, old, new = _moved_widget_pickle(directory, write_module)
    assert old.encode() in data
    rules = PickleRules.build(remap={old: new}, allowed_modules=[new] if allow else None)
    with StateShelf(sqlite_dbm.open(db_path, "c"), rules=rules) as shelf:
        _write_raw(db_path, "job-1", data)
        loaded = shelf["job-1"]
    new_module = sys.modules[new]
    assert isinstance(loaded, new_module.Widget)
    assert type(loaded).__module__ == new
    assert loaded.size == 7
    assert old not in sys.modules


def test_without_remap_a_moved_class_fails_to_load(module_dir, db_path: Path) -> None:
    """Control for the remap test: the same pickle under default rules raises LoadError."""
    directory, write_module = module_dir
    data, old, _new = _moved_widget_pickle(directory, write_module)
    with _open_shelf(db_path) as shelf:
        _write_raw(db_path, "job-1", data)
        with pytest.raises(LoadError, match=old):
            shelf["job-1"]


# --- compatibility with a stock shelve on Python 3.13 ----------------------------------------

_STOCK_SHELVE_READER = textwrap.dedent("""
    import dbm.sqlite3, json, shelve, sys
    with shelve.Shelf(dbm.sqlite3.open(sys.argv[1], "r")) as shelf:
        print(json.dumps({key: shelf[key] for key in shelf}, sort_keys=True))
""")


def test_unsigned_shelf_is_readable_by_stock_shelve_on_313(db_path: Path) -> None:
    """Python 3.13's shelve over dbm.sqlite3 reads what an unsigned StateShelf wrote."""
    if not PY313.exists():
        pytest.skip("Python 3.13 with dbm.sqlite3 is not installed on this machine")
    with _open_shelf(db_path) as shelf:
        shelf["job-1"] = {"a": [1, 2]}
        shelf["jöb-2"] = None
        shelf["job-3"] = "text"
    proc = subprocess.run([str(PY313), "-I", "-c", _STOCK_SHELVE_READER, str(db_path)],
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"job-1": {"a": [1, 2]}, "jöb-2": None, "job-3": "text"}
