"""The scratch directory of one benchmark run (shared by the benchmark scripts)."""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

BENCH_ROOT = Path(__file__).resolve().parent.parent / ".bench-tmp"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A new directory under ``.bench-tmp/`` for this run, removed when the run ends.

    SIGTERM is made to raise KeyboardInterrupt, so a run stopped by ``bench.py`` (or ``kill``)
    cleans up as one stopped by Ctrl-C does. ``.bench-tmp/`` itself goes too once it is empty:
    another run, or the peers' virtual environment, may still be using it.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    BENCH_ROOT.mkdir(exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=BENCH_ROOT, prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with suppress(OSError):
            BENCH_ROOT.rmdir()
