"""The peers' virtual environment of a benchmark: made once under .bench-tmp/, never the project's."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def run(cmd: Sequence[str], timeout: float | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), check=True, text=True, capture_output=True, timeout=timeout,
                          env=env)


def ensure_venv(venv: Path, pins: dict[str, str], optional: Sequence[str] = ()) -> Path:
    """The interpreter of ``venv`` with ``pins`` installed (``name==version``), rebuilt only when
    the pins change. ``optional`` requirements are tried after, as binary wheels only; one that
    will not install is left out (the caller looks for a fallback)."""
    python = venv / "bin" / "python"
    stamp = venv / "bench-pins.json"
    wanted = json.dumps({"pins": pins, "optional": list(optional), "python": sys.version})
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(venv, ignore_errors=True)
    print(f"creating {venv} and installing {', '.join(f'{k}=={v}' for k, v in pins.items())}"
          " (once)...", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", str(venv)])
    run([str(python), "-m", "pip", "install", "-q", *(f"{k}=={v}" for k, v in pins.items())])
    for requirement in optional:
        with contextlib.suppress(subprocess.CalledProcessError):
            run([str(python), "-m", "pip", "install", "-q", "--only-binary", ":all:", requirement])
    stamp.write_text(wanted)
    return python


def installed_versions(python: Path, names: Sequence[str]) -> dict[str, str]:
    """The versions of those distributions in the environment of ``python`` (extras ignored)."""
    names = sorted({name.split("[")[0] for name in names})
    code = ("import json, importlib.metadata as m\n"
            f"v = {{}}\nfor n in {names!r}:\n"
            "    try: v[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(v))")
    return json.loads(run([str(python), "-c", code]).stdout)
