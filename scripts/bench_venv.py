"""The virtual environments of the benchmarks, made once under .bench-tmp/, never the project's:
the peers' (each script's pins) and the one jobq's processes start in (:func:`jobq_python`)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from bench_scratch import BENCH_ROOT

JOBQ_VENV = BENCH_ROOT / "jobq-venv"  # see jobq_python


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


def jobq_python() -> Path:
    """An interpreter that starts as one where jobq was installed with ``pip install .``: the
    venv JOBQ_VENV, holding jobq's runtime dependencies at the versions installed here, and not
    jobq (the benchmarks put a checkout on PYTHONPATH).

    Not this interpreter: the project's environment is installed with ``pip install -e``, whose
    finder (a ``.pth`` file) every start of that interpreter imports, some 50 M instructions:
    ``python -c pass`` took 27.9 ms there against 13.5 ms here, and ``jobq worker`` ran its
    first job after 99.0 ms against 89.4 ms (medians of 30 interleaved rounds, one VM). The
    peers' venv and users' installs do not pay it.
    Where jobq is not installed here at all, this interpreter is returned as it is.
    """
    from importlib import metadata

    try:
        requires = metadata.requires("jobq") or []
    except metadata.PackageNotFoundError:
        return Path(sys.executable)
    pins = {}
    for requirement in requires:
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        if "extra ==" in requirement:
            continue
        with contextlib.suppress(metadata.PackageNotFoundError):  # e.g. tzdata, Windows only
            pins[name] = metadata.version(name)
    return ensure_venv(JOBQ_VENV, pins)
