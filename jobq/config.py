"""Queue configuration: one frozen dataclass, validated once; environment variables read here only."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ConfigError, InvalidJob
from .pickling import PickleRules

ENV_HOME = "JOBQ_HOME"
ENV_SECRET_KEY = "JOBQ_SECRET_KEY"
ENV_OLD_SECRET_KEYS = "JOBQ_OLD_SECRET_KEYS"  # comma-separated; they verify, never sign
MIN_KEY_BYTES = 16  # HMAC-SHA256 keys shorter than this are guessable; 32 random bytes are better
DEFAULT_DIR = ".jobq"
ENV_HOME_ORIGIN = "$" + ENV_HOME

MiB = 1 << 20


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    """Everything a :class:`~jobq.Queue` needs to know about its directory and defaults.

    ``fsync=False`` trades durability for speed: an enqueue returns before its record reaches
    stable storage, so a power cut (not a process crash) can lose the last jobs enqueued.
    """

    path: str
    origin: str = "given"  # where the path came from: "given", "$JOBQ_HOME" or "default"
    fsync: bool = True
    secret_key: bytes | None = None
    old_secret_keys: tuple[bytes, ...] = ()  # keys being rotated out: verify only (jobq.local.keys)
    rules: PickleRules = field(default_factory=PickleRules.build)
    segment_size: int = 64 * MiB
    max_record_size: int = 16 * MiB
    default_max_attempts: int = 3
    # How long finished jobs are kept (jobq.retention): seconds, or None for ever.
    result_ttl: float | None = None
    failure_ttl: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fsync, bool):
            raise ConfigError(f"fsync must be True or False, not {self.fsync!r}")
        if self.secret_key is not None and (not isinstance(self.secret_key, bytes)
                                            or len(self.secret_key) < MIN_KEY_BYTES):
            raise ConfigError(f"secret_key must be at least {MIN_KEY_BYTES} bytes")
        if self.old_secret_keys and self.secret_key is None:
            raise ConfigError("old secret keys only verify: give the current key too")
        if not isinstance(self.old_secret_keys, tuple) or any(
                not isinstance(k, bytes) or len(k) < MIN_KEY_BYTES for k in self.old_secret_keys):
            raise ConfigError(f"old_secret_keys must be a tuple of keys of at least"
                              f" {MIN_KEY_BYTES} bytes each")
        for name in ("segment_size", "max_record_size", "default_max_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.max_record_size > 0xFFFF_FFFF:
            raise ConfigError("max_record_size must fit in 32 bits (4 GiB)")
        _check_ttls(self)


def _check_ttls(cfg: QueueConfig) -> None:
    """ConfigError for a queue default ttl that is not None nor a number of seconds >= 0."""
    from .retention import check_ttl  # (it imports jobq.errors only)
    for name in ("result_ttl", "failure_ttl"):
        try:
            object.__setattr__(cfg, name, check_ttl(name, getattr(cfg, name)))
        except InvalidJob as exc:
            raise ConfigError(str(exc)) from exc


def is_server_url(path: str) -> bool:
    """Does ``path`` name a queue in PostgreSQL (``postgresql://…``) rather than a directory?"""
    return path.startswith(("postgresql://", "postgres://"))


def describe(cfg: QueueConfig) -> str:
    """The queue's path for a message, with where it came from when it was not given."""
    if cfg.origin == ENV_HOME_ORIGIN:
        return f"{cfg.path} (from ${ENV_HOME})"
    if cfg.origin == "default":
        return f"{cfg.path} (the default ./{DEFAULT_DIR}: neither --dir nor ${ENV_HOME} was set)"
    return cfg.path


def build(path: str | os.PathLike[str] | None = None, *, secret_key: str | bytes | None = None,
          old_secret_keys: Iterable[str | bytes] | None = None,
          allowed_modules: Iterable[str] | None = None, remap: Mapping[str, str] | None = None,
          **options: object) -> QueueConfig:
    """Make a :class:`QueueConfig`, filling the directory and keys from the environment.

    ``~`` in ``$JOBQ_HOME`` is expanded: the shell leaves it alone in a quoted value
    (``JOBQ_HOME='~/q'``), and a directory named ``~`` is never what was meant.
    """
    origin = "given"
    if path is None:
        home = os.environ.get(ENV_HOME)
        path, origin = (os.path.expanduser(home), ENV_HOME_ORIGIN) if home \
            else (DEFAULT_DIR, "default")
    try:
        path = os.fspath(path)
    except TypeError as exc:
        raise ConfigError(f"queue path must be a string or path, not {type(path).__name__}") from exc
    if not path:
        raise ConfigError("queue path is empty")
    key_from = "secret_key"
    if secret_key is None:
        secret_key, key_from = os.environ.get(ENV_SECRET_KEY) or None, f"${ENV_SECRET_KEY}"
    secret_key = _key(secret_key, key_from)
    old_keys = _old_keys(old_secret_keys)
    old_keys = tuple(dict.fromkeys(k for k in old_keys if k != secret_key))  # each once
    if old_keys and secret_key is None:
        given = _OLD_FROM if old_secret_keys is None else "old_secret_keys"
        raise ConfigError(f"old secret keys were given ({given}) but no current one: set"
                          f" {key_from} to the key that signs new records; old keys only verify"
                          " records signed before a rotation")
    try:
        rules = PickleRules.build(remap=remap, allowed_modules=allowed_modules)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"bad remap or allowed_modules: {exc}") from exc
    try:
        return QueueConfig(path=path if is_server_url(path) else os.path.abspath(path),
                           origin=origin, secret_key=secret_key,
                           old_secret_keys=old_keys, rules=rules,
                           **options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc


_OLD_FROM = f"${ENV_OLD_SECRET_KEYS}"


def _key(key: object, origin: str) -> bytes | None:
    """A key as bytes, refused if too short with a message naming where it came from."""
    if isinstance(key, str):
        key = key.encode()
    if isinstance(key, bytes) and len(key) < MIN_KEY_BYTES:
        # Name what the user set: a message about secret_key misleads one who set the variable.
        raise ConfigError(f"{origin} is {len(key)} bytes; it must be at least"
                          f" {MIN_KEY_BYTES} bytes (for example 64 hex digits from"
                          " `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return key  # type: ignore[return-value]  # another type: QueueConfig refuses it


def _old_keys(given: Iterable[str | bytes] | None) -> tuple[bytes, ...]:
    """The old keys given, else those of ``$JOBQ_OLD_SECRET_KEYS`` (comma-separated, spaces
    around each ignored), each checked like the current key and named by where it came from."""
    if given is None:
        listed = [k.strip() for k in os.environ.get(ENV_OLD_SECRET_KEYS, "").split(",")]
        listed = [k for k in listed if k]
        return tuple(_key(k, f"{_OLD_FROM} key {i} of {len(listed)}")  # type: ignore[misc]
                     for i, k in enumerate(listed, 1))
    if isinstance(given, (str, bytes)):
        raise ConfigError("old_secret_keys takes a list of keys, not one key")
    try:
        keys = list(given)
    except TypeError as exc:
        raise ConfigError(f"old_secret_keys must be a list of keys, not {type(given).__name__}"
                          ) from exc
    found = []
    for i, k in enumerate(keys):
        if not isinstance(k, (str, bytes)):
            raise ConfigError(f"old_secret_keys[{i}] must be str or bytes, not {type(k).__name__}")
        found.append(_key(k, f"old_secret_keys[{i}]"))
    return tuple(found)  # type: ignore[arg-type]
