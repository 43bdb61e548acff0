"""WorkerConfig: every bad setting is refused with a clear error."""

from __future__ import annotations

import pytest

from jobq.errors import ConfigError
from workers import WorkerConfig


@pytest.mark.parametrize("field,value", [
    ("concurrency", 0), ("concurrency", 1.5), ("concurrency", True), ("max_crashes", 0),
    ("lease_seconds", 0), ("poll_interval", -1), ("reap_interval", float("nan")),
    ("shutdown_grace", -0.1), ("cancel_grace", "10"), ("retry_base", None), ("imports", "myapp"),
    ("compact_threshold", -1), ("compact_threshold", 1.5), ("compact_threshold", True),
    ("prefetch", 0), ("prefetch", 2.5), ("prefetch", False),
], ids=lambda v: repr(v))
def test_bad_settings_are_config_errors(field, value):
    """Out-of-range or wrongly typed settings raise ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=field):
        WorkerConfig(**{field: value})


def test_defaults_are_valid():
    """The defaults describe a working configuration."""
    config = WorkerConfig()
    assert config.concurrency == 1 and config.max_crashes == 3 and config.lease_seconds == 60
    assert config.compact_threshold == 64 * 1024 * 1024
    assert config.prefetch is None  # the engine's: jobq.engine.Engine.prefetch


def test_unknown_worker_option_is_a_config_error(queue):
    """A misspelt option is refused by name instead of being ignored."""
    from workers import Worker
    with pytest.raises(ConfigError, match="lease_secs"):
        Worker(queue, lease_secs=5)


def test_configured_imports_are_imported_by_the_worker(queue, tmp_path, monkeypatch):
    """Worker(imports=...) imports its modules before starting children; a bad one is refused."""
    import sys

    from workers import Worker
    (tmp_path / "preloaded_mod_q.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "preloaded_mod_q", raising=False)
    Worker(queue, imports=("preloaded_mod_q",)).run(burst=True)
    assert sys.modules["preloaded_mod_q"].LOADED
    with pytest.raises(ConfigError, match="cannot import no_such_mod_q: ModuleNotFoundError"):
        Worker(queue, imports=("no_such_mod_q",)).run(burst=True)
