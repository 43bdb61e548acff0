"""The one way jobq pickles and unpickles: protocol 5 out, one ``Unpickler`` subclass in.

The unpickler does two things a plain ``pickle.loads`` cannot:

* remaps module paths from a table, so moving a class (``myapp.jobs`` -> ``myapp.tasks.jobs``)
  does not orphan pickles written before the move;
* optionally refuses every global outside an allow-list, so a hostile record that names
  ``os.system`` raises :class:`~jobq.errors.UnpicklingForbidden` instead of running.

Pickle executes code. Without an allow-list (the default) or a signing key, whoever can write the
queue directory can run code in every process that reads it.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import JobqError, LoadError, NotPicklable, UnpicklingForbidden

PROTOCOL = 5

# Moves of jobq's own classes, old module -> new module. Empty today; when a class moves, add a line
# here and keep it forever (golden pickles in tests/golden exercise it).
MOVED_MODULES: dict[str, str] = {}

# Globals that are always safe to load: jobq's own persisted classes and plain data types.
_ALWAYS_ALLOWED: dict[str, frozenset[str]] = {
    "jobq.payload": frozenset({"JobPayload"}),
    "jobq.state": frozenset({"JobState"}),
    "builtins": frozenset({
        "set", "frozenset", "complex", "bytearray", "range", "slice", "list", "dict", "tuple",
        "str", "bytes", "int", "float", "bool", "object",
    }),
    "copyreg": frozenset({"_reconstructor"}),
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "uuid": frozenset({"UUID"}),
    "collections": frozenset({"OrderedDict", "deque", "Counter", "defaultdict"}),
}


def _check_module_name(name: str) -> str:
    if not isinstance(name, str) or not name or any(not part.isidentifier() for part in name.split(".")):
        raise ValueError(f"not a module path: {name!r}")
    return name


class PickleRules(NamedTuple):
    """How a queue unpickles: which module paths moved, and (optionally) which modules may load.

    ``allowed_modules`` entries match a module and its submodules (``"myapp"`` admits
    ``myapp.models``). ``None`` means unrestricted. (A named tuple: a frozen dataclass costs
    some 3.5 M instructions to build as a worker starts, issue 19.)
    """

    remap: Mapping[str, str] = MappingProxyType({})
    allowed_modules: frozenset[str] | None = None

    @classmethod
    def build(cls, remap: Mapping[str, str] | None = None,
              allowed_modules: Iterable[str] | None = None) -> PickleRules:
        table = dict(MOVED_MODULES)
        for old, new in (remap or {}).items():
            table[_check_module_name(old)] = _check_module_name(new)
        if isinstance(allowed_modules, str):
            raise ValueError("allowed_modules takes a list of module names, not one string")
        allowed = None if allowed_modules is None else frozenset(
            _check_module_name(m) for m in allowed_modules)
        return cls(remap=table, allowed_modules=allowed)

    def admits(self, module: str, name: str) -> bool:
        if name in _ALWAYS_ALLOWED.get(module, ()):
            return True
        if self.allowed_modules is None:
            return True
        return any(module == m or module.startswith(m + ".") for m in self.allowed_modules)


DEFAULT_RULES = PickleRules.build()


class JobqUnpickler(pickle.Unpickler):
    """Unpickler that applies :class:`PickleRules` to every global a pickle refers to."""

    def __init__(self, file: io.BytesIO, rules: PickleRules) -> None:
        super().__init__(file)
        self._rules = rules

    def find_class(self, module: str, name: str) -> Any:
        module = self._rules.remap.get(module, module)
        if not self._rules.admits(module, name):
            raise UnpicklingForbidden(
                f"refused to load {module}.{name}: module not in the queue's allowed_modules",
                module=module, name=name)
        return super().find_class(module, name)


def dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with protocol 5; anything that cannot be pickled raises NotPicklable."""
    try:
        return pickle.dumps(obj, protocol=PROTOCOL)
    except Exception as exc:  # pickle raises PicklingError, TypeError, AttributeError, ...
        raise NotPicklable(f"cannot pickle {type(obj).__name__}: {exc}") from exc


_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def _check_memo(data: bytes) -> None:
    """Refuse memo indices a pickle of this size cannot need: each one makes the C unpickler
    grow its memo to that size, so ``LONG_BINPUT 4294967295`` asks for tens of gigabytes.

    Found by tests/reliability/test_fuzz.py. Only restricted mode pays for this pre-scan.
    """
    import pickletools  # only restricted mode needs it: not on a worker's start (issue 19)

    bad = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd escapes in protocol-0 strings warn while parsing
        try:
            for opcode, arg, _ in pickletools.genops(data):
                if opcode.name in _MEMO_PUTS and not 0 <= int(arg) <= len(data):
                    bad = arg
                    break
        except Exception:  # not a well-formed pickle: load() reports that with its own words
            pass
    if bad is not None:
        raise UnpicklingForbidden(f"refused to load a pickle that asks for memo slot {bad} in"
                                  f" {len(data)} bytes", module="", name="")


def loads(data: bytes, rules: PickleRules = DEFAULT_RULES) -> Any:
    """Unpickle ``data`` under ``rules``; failures other than jobq's own become LoadError.

    In restricted mode (an allow-list) the opcodes are checked first, so a hostile pickle can
    neither name a forbidden global nor make the unpickler allocate without bound.
    """
    if rules.allowed_modules is not None:
        _check_memo(data)
    try:
        if not rules.remap and rules.allowed_modules is None:
            # Nothing to remap or refuse: find_class would pass every global through, at the
            # cost of a Python call each (a worker loads a payload per job).
            return pickle.loads(data)
        return JobqUnpickler(io.BytesIO(data), rules).load()
    except JobqError:
        raise
    except Exception as exc:  # ModuleNotFoundError, AttributeError, UnpicklingError, EOFError, ...
        raise LoadError(f"cannot unpickle: {type(exc).__name__}: {exc}") from exc
