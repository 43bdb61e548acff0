"""The one unpickler: module remaps, allow-lists, and clear errors."""

from __future__ import annotations

import os
import pickle
import sys
import textwrap

import pytest

from jobq import pickling
from jobq.errors import ConfigError, LoadError, NotPicklable, UnpicklingForbidden
from jobq.payload import JobPayload


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_allow_list_refuses_os_system_without_running_it(tmp_path):
    """A pickle that would call os.system raises instead of running under an allow-list."""
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsShell(f"touch {marker}"), protocol=5)
    rules = pickling.PickleRules.build(allowed_modules=["myapp"])
    with pytest.raises(UnpicklingForbidden) as info:
        pickling.loads(data, rules)
    assert info.value.name == "system" and not marker.exists()
    assert isinstance(info.value, pickle.UnpicklingError)


def test_allow_list_admits_listed_modules_submodules_and_jobq_classes():
    """Listed packages (and their submodules), jobq's classes and plain data types load."""
    rules = pickling.PickleRules.build(allowed_modules=["collections"])
    import collections
    import datetime
    value = [collections.OrderedDict(a=1), JobPayload(job_id="j", task="m:f"),
             datetime.datetime(2020, 1, 1), {1, 2}, complex(1, 2)]
    assert pickling.loads(pickling.dumps(value), rules) == value
    assert rules.admits("collections.abc", "Mapping") and not rules.admits("collectionsx", "Y")


def test_remap_loads_a_class_from_its_new_module(tmp_path, monkeypatch):
    """A pickle naming a module that moved loads from the module it moved to."""
    (tmp_path / "old_home.py").write_text(textwrap.dedent("""
        class Thing:
            def __init__(self, x): self.x = x
    """))
    (tmp_path / "new_home.py").write_text(textwrap.dedent("""
        class Thing:
            def __init__(self, x): self.x = x
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import old_home
    data = pickling.dumps(old_home.Thing(5))
    monkeypatch.delitem(sys.modules, "old_home")
    (tmp_path / "old_home.py").unlink()
    with pytest.raises(LoadError, match="old_home"):
        pickling.loads(data)
    obj = pickling.loads(data, pickling.PickleRules.build(remap={"old_home": "new_home"}))
    import new_home
    assert isinstance(obj, new_home.Thing) and obj.x == 5


def test_unpicklable_argument_is_a_clear_error():
    """Lambdas, locks and the like raise NotPicklable naming the type."""
    import threading
    for bad in (lambda: 1, threading.Lock()):
        with pytest.raises(NotPicklable, match="cannot pickle"):
            pickling.dumps((1, bad))


def test_garbage_bytes_raise_load_error():
    """Bytes that are not a pickle raise LoadError, not a bare pickle exception."""
    for junk in (b"", b"\x80\x05garbage", b"not a pickle at all"):
        with pytest.raises(LoadError):
            pickling.loads(junk)


@pytest.mark.parametrize("remap,allowed", [({"ok": "bad name"}, None), (None, "single-string"),
                                           (None, ["fine", "9bad"])], ids=["remap", "str", "name"])
def test_bad_rules_are_config_errors(remap, allowed, tmp_path):
    """Malformed remap tables or allow-lists are rejected when the queue is opened."""
    from jobq import Queue
    with pytest.raises(ConfigError):
        Queue(tmp_path / "q", remap=remap, allowed_modules=allowed)
    assert not (tmp_path / "q").exists()
