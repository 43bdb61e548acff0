"""Versioned pickling for persisted dataclasses: the schema version is part of the data contract.

A persisted class mixes in :class:`Versioned`, sets ``SCHEMA_VERSION`` and gives one migration
function per step in ``MIGRATIONS`` (``{1: v1_to_v2, ...}``). ``__getstate__`` writes the version
beside the fields; ``__setstate__`` upgrades an old state one step at a time and refuses a version
newer than the code with an error that names both.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

from .errors import SchemaVersionError

SCHEMA_KEY = "schema"

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def migrate(name: str, state: dict[str, Any], current: int, steps: dict[int, Migration]) -> dict[str, Any]:
    """Upgrade ``state`` to version ``current`` step by step; return a new dict."""
    if not isinstance(state, dict):
        raise SchemaVersionError(f"{name}: pickled state is a {type(state).__name__}, not a dict")
    version = state.get(SCHEMA_KEY)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SchemaVersionError(f"{name}: pickled state has no valid schema version ({version!r})",
                                 found=version, supported=current)
    if version > current:
        raise SchemaVersionError(
            f"{name} schema version {version} is newer than this jobq understands (version {current});"
            " upgrade jobq to read it", found=version, supported=current)
    state = dict(state)
    while version < current:
        state = steps[version](state)
        version += 1
        state[SCHEMA_KEY] = version
    return state


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    # dataclasses.fields() rebuilds its tuple on every call; pickling a job calls this once per job.
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.cache
def _field_set(cls: type) -> frozenset[str]:
    return frozenset(_field_names(cls))


# The keys a class's current pickles hold, in the order its writers write them (its fields,
# then the version), by class: a plain dict, cheaper to ask than a functools.cache.
# class -> its keys as written (its fields, then the schema key), and whether it overrides
# _unpack (a worker unpickles a payload a job: a call to the base's, which returns the state
# as given, cost it some 1,000 instructions).
_stored_keys: dict[type, tuple[tuple[str, ...], bool]] = {}


class Versioned:
    """Mixin for dataclasses persisted by pickle: writes and migrates a schema version."""

    SCHEMA_VERSION: ClassVar[int]
    MIGRATIONS: ClassVar[dict[int, Migration]]

    def _pack(self, state: dict[str, Any]) -> dict[str, Any]:
        """Turn field values into plain data before pickling (for example enums into strings)."""
        return state

    @classmethod
    def _unpack(cls, state: dict[str, Any]) -> dict[str, Any]:
        """Inverse of :meth:`_pack`, applied after migration."""
        return state

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)  # a C-level copy: this runs once per finished job
        if state.keys() != _field_set(type(self)):  # an attribute beyond the fields, or missing
            state = {name: getattr(self, name) for name in _field_names(type(self))}
        state = self._pack(state)
        state[SCHEMA_KEY] = self.SCHEMA_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cls = type(self)
        stored = _stored_keys.get(cls)
        if stored is None:
            stored = _stored_keys[cls] = ((*_field_names(cls), SCHEMA_KEY),
                                          cls._unpack.__func__ is not Versioned._unpack.__func__)
        keys, unpacks = stored
        # The current version, as every job a worker runs, with its keys in the order written:
        # no migration, and one tuple comparison checks the fields (a worker loads a payload a
        # job; comparing the keys with a set cost 2,600 instructions of __setstate__'s 10,400).
        if type(state) is dict and tuple(state) == keys and type(state[SCHEMA_KEY]) is int \
                and state[SCHEMA_KEY] == cls.SCHEMA_VERSION:
            fields = self.__dict__  # filled in place: the caller's dict stays as it was
            fields.update(state)
            del fields[SCHEMA_KEY]
            if unpacks:
                unpacked = self._unpack(fields)
                if unpacked is not fields:
                    fields.update(unpacked)
            return
        version = state.get(SCHEMA_KEY) if type(state) is dict else None
        if type(version) is int and version == cls.SCHEMA_VERSION:
            state = dict(state)  # the current version, its keys in another order
        else:
            state = migrate(cls.__name__, state, cls.SCHEMA_VERSION, cls.MIGRATIONS)
        del state[SCHEMA_KEY]
        names = _field_set(cls)
        if state.keys() != names:
            raise SchemaVersionError(
                f"{cls.__name__}: pickled fields {sorted(set(state) ^ names)} do not match schema"
                f" version {cls.SCHEMA_VERSION}", found=cls.SCHEMA_VERSION,
                supported=cls.SCHEMA_VERSION)
        # Straight into __dict__: no __setattr__, so frozen dataclasses too.
        self.__dict__.update(self._unpack(state))
