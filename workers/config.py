"""Worker configuration: one frozen dataclass, validated when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from jobq.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """How a worker runs jobs. Times are in seconds.

    ``lease_seconds`` only matters for a worker that is alive but stuck: a worker that dies is
    detected through its liveness lock within ``reap_interval``, whatever the lease.
    """

    concurrency: int = 1  # child processes, each running one job at a time
    # Most jobs a child claims at once (1: one at a time; see workers.child); None: the engine's
    # (jobq.engine.Engine.prefetch: 500 on a directory, 250 on PostgreSQL).
    prefetch: int | None = None
    imports: tuple[str, ...] = ()  # modules imported before children start (tasks, signals...)
    lease_seconds: float = 60.0  # renewed every third of it while jobs run
    poll_interval: float = 0.02  # idle: how often to look for new jobs
    # Idle, on storage that wakes workers when jobs come (PostgreSQL's LISTEN): how often to look
    # anyway, for a wake-up that was lost (jobq.engine.Engine.idle_wait).
    fallback_interval: float = 1.0
    reap_interval: float = 0.1  # how often to look for dead workers and cancelled jobs
    heartbeat_interval: float = 2.0  # how often the worker's record says what its children run
    shutdown_grace: float = 30.0  # on SIGTERM/SIGINT: time running jobs get to finish
    cancel_grace: float = 10.0  # a running job asked to cancel is killed after this
    max_crashes: int = 3  # crashes (attempts that died before saving) before a job is set aside
    retry_base: float = 1.0  # backoff of the first retry (then doubling, with jitter)
    retry_cap: float = 300.0  # longest backoff
    # Compact the log once purges have left about this many dead bytes in it (0: never; see
    # jobq.local.upkeep). One default segment's worth.
    compact_threshold: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_crashes", "prefetch"):
            value = getattr(self, name)
            if name == "prefetch" and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, not {value!r}")
        for name in ("lease_seconds", "poll_interval", "fallback_interval", "reap_interval",
                     "heartbeat_interval"):
            value = getattr(self, name)
            if not _number(value) or value <= 0:
                raise ConfigError(f"{name} must be a number of seconds > 0, not {value!r}")
        for name in ("shutdown_grace", "cancel_grace", "retry_base", "retry_cap"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ConfigError(f"{name} must be a number of seconds >= 0, not {value!r}")
        if not isinstance(self.compact_threshold, int) or isinstance(self.compact_threshold, bool) \
                or self.compact_threshold < 0:
            raise ConfigError("compact_threshold must be a number of bytes >= 0 (0: off), not"
                              f" {self.compact_threshold!r}")
        if isinstance(self.imports, str) or not all(isinstance(m, str) for m in self.imports):
            raise ConfigError("imports must be a list of module names")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
