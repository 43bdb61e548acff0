"""Queue configuration: one frozen dataclass, validated once; environment variables read here only."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ConfigError
from .pickling import PickleRules

ENV_HOME = "JOBQ_HOME"
ENV_SECRET_KEY = "JOBQ_SECRET_KEY"
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
    rules: PickleRules = field(default_factory=PickleRules.build)
    segment_size: int = 64 * MiB
    max_record_size: int = 16 * MiB
    default_max_attempts: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.fsync, bool):
            raise ConfigError(f"fsync must be True or False, not {self.fsync!r}")
        if self.secret_key is not None and (not isinstance(self.secret_key, bytes)
                                            or len(self.secret_key) < MIN_KEY_BYTES):
            raise ConfigError(f"secret_key must be at least {MIN_KEY_BYTES} bytes")
        for name in ("segment_size", "max_record_size", "default_max_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        if self.max_record_size > 0xFFFF_FFFF:
            raise ConfigError("max_record_size must fit in 32 bits (4 GiB)")


def describe(cfg: QueueConfig) -> str:
    """The queue's path for a message, with where it came from when it was not given."""
    if cfg.origin == ENV_HOME_ORIGIN:
        return f"{cfg.path} (from ${ENV_HOME})"
    if cfg.origin == "default":
        return f"{cfg.path} (the default ./{DEFAULT_DIR}: neither --dir nor ${ENV_HOME} was set)"
    return cfg.path


def build(path: str | os.PathLike[str] | None = None, *, secret_key: str | bytes | None = None,
          allowed_modules: Iterable[str] | None = None, remap: Mapping[str, str] | None = None,
          **options: object) -> QueueConfig:
    """Make a :class:`QueueConfig`, filling the directory and key from the environment.

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
    if isinstance(secret_key, str):
        secret_key = secret_key.encode()
    if isinstance(secret_key, bytes) and len(secret_key) < MIN_KEY_BYTES:
        # Name what the user set: a message about secret_key misleads one who set the variable.
        raise ConfigError(f"{key_from} is {len(secret_key)} bytes; it must be at least"
                          f" {MIN_KEY_BYTES} bytes (for example 64 hex digits from"
                          " `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    try:
        rules = PickleRules.build(remap=remap, allowed_modules=allowed_modules)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"bad remap or allowed_modules: {exc}") from exc
    try:
        return QueueConfig(path=os.path.abspath(path), origin=origin, secret_key=secret_key,
                           rules=rules, **options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
