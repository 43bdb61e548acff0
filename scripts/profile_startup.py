#!/usr/bin/env python3
"""Instructions (callgrind) of ``jobq worker --burst`` on a one-job queue: the supervisor from
exec to its first fork, and its child from the fork to its job's first line (issue 19). Unlike
the wall clock of ``scripts/bench_startup.py``, the counts are the same on a loaded machine.

Usage::

    python scripts/profile_startup.py [--checkout DIR ...] [--modules N]

For each checkout (default: this one), with its bytecode compiled and ``PYTHONHASHSEED=0``:
``python -c pass``, the supervisor to its first fork (stopped by an audit hook at ``os.fork``),
and the child (its callgrind file holds what it inherited, so the supervisor's count to the fork
is subtracted). ``--modules N`` also prints the N modules whose own import costs the most before
the fork (each module's execution up to its end, less the modules it imports: callgrind dumps
its counts at each module's start and end), and the instructions spent before ``jobq.cli`` runs
(the interpreter and site). Needs ``valgrind``; takes a minute or two a checkout.
"""

from __future__ import annotations

import argparse
import compileall
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Run as the supervisor: jobq's command line, ended at the first fork (the child's run is
# measured from another run, where the fork goes ahead and the job ends the child).
_SUPERVISOR = r"""
import os, sys
stop_at_fork, marks_file = sys.argv[2] == "1", sys.argv[3]
MARKS = []

def mark(what):
    MARKS.append(what)
    os.getpgid(0)  # callgrind dumps its counts here (--dump-before=os_getpgid)

class Loader:
    def __init__(self, loader, name):
        self.loader, self.name = loader, name
    def create_module(self, spec):
        return self.loader.create_module(spec)
    def exec_module(self, module):
        mark("start " + self.name)
        try:
            self.loader.exec_module(module)
        finally:
            mark("end " + self.name)
    def __getattr__(self, name):
        return getattr(self.loader, name)

class Finder:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is cls or find is None:
                continue
            spec = find(name, path, target)
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = Loader(spec.loader, name)
                return spec
        return None

def hook(event, args):
    if event == "os.fork" and stop_at_fork:
        if marks_file:
            mark("fork")
            with open(marks_file, "w") as f:
                f.write("\n".join(MARKS) + "\n")
        os._exit(0)

if marks_file:
    sys.meta_path.insert(0, Finder)
    mark("start (jobq.cli)")
sys.addaudithook(hook)
import runpy
sys.argv = ["jobq", "worker", "--burst", "--dir", sys.argv[1]]
runpy.run_module("jobq.cli", run_name="__main__", alter_sys=True)
"""

# The job ends its child at its first line. A function of a module, as users' tasks are (a
# builtin such as os._exit would cost the child's signature check some 13 M more: inspect
# parses a builtin's text signature).
_TASK = "import os\n\n\ndef stop():\n    os._exit(0)\n"
_ENQUEUE = ("import sys\nfrom jobq import Queue\nfrom profile_startup_task import stop\n"
            "with Queue(sys.argv[1]) as q:\n    q.enqueue(stop)\n")


def total(path: Path) -> int:
    """The instruction count a callgrind file (or dump) holds."""
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    return 0


def callgrind(args: list[str], out: str, env: dict[str, str], cwd: Path,
              extra: tuple[str, ...] = ()) -> None:
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *extra,
                    sys.executable, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600, check=False)


def measure(checkout: Path, tmp: Path, modules: int) -> None:
    for package in ("jobq", "workers"):
        compileall.compile_dir(str(checkout / package), quiet=1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=os.pathsep.join([str(checkout), str(tmp)]), PYTHONHASHSEED="0")
    (tmp / "supervisor.py").write_text(_SUPERVISOR)
    (tmp / "profile_startup_task.py").write_text(_TASK)
    for name in ("q1", "q2", "q3"):
        subprocess.run([sys.executable, "-c", _ENQUEUE, str(tmp / name)], env=env, cwd=tmp,
                       check=True)
    callgrind(["-c", "pass"], str(tmp / "pass.out"), env, tmp)
    callgrind([str(tmp / "supervisor.py"), str(tmp / "q1"), "1", ""], str(tmp / "sup.out"),
              env, tmp)
    callgrind([str(tmp / "supervisor.py"), str(tmp / "q2"), "0", ""], str(tmp / "all.%p.out"),
              env, tmp, ("--trace-children=yes",))
    supervisor = total(tmp / "sup.out")
    # The first child's file: the smallest count above the supervisor's (later ones are the
    # supervisor itself and the children it forks again after the job ended its first).
    children = sorted(c for p in tmp.glob("all.*.out") if (c := total(p)) > supervisor)
    child = children[0] - supervisor if children else 0
    print(f"{checkout}:\n  python -c pass {total(tmp / 'pass.out') / 1e6:9.1f} M instructions\n"
          f"  supervisor, exec to its first fork {supervisor / 1e6:9.1f} M\n"
          f"  child, fork to its job {child / 1e6:9.1f} M")
    if modules:
        by_module(tmp, env, modules)


def by_module(tmp: Path, env: dict[str, str], top: int) -> None:
    """Each module's own instructions (its import less those it imports), the largest first."""
    marks_file = tmp / "marks.txt"
    callgrind([str(tmp / "supervisor.py"), str(tmp / "q3"), "1", str(marks_file)],
              str(tmp / "mod.out"), env, tmp, ("--dump-before=os_getpgid",))
    marks = marks_file.read_text().split("\n")[:-1]
    # Dump i (1-based) holds the instructions from mark i-1 to mark i.
    costs = [total(tmp / f"mod.out.{i}") for i in range(1, len(marks) + 1)]
    own: dict[str, int] = {}
    stack: list[str] = []
    for mark, cost in zip(marks, costs):
        if stack:
            own[stack[-1]] = own.get(stack[-1], 0) + cost
        kind, _, name = mark.partition(" ")
        if kind == "start":
            stack.append(name)
        elif kind == "end":
            stack.pop()
    print(f"  before jobq.cli runs (interpreter, site) {costs[0] / 1e6:9.1f} M;"
          f" to the fork, with these marks {sum(costs) / 1e6:.1f} M; own instructions:")
    for name, cost in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {cost / 1e6:7.2f} M  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, action="append", default=[])
    parser.add_argument("--modules", type=int, default=0, metavar="N")
    args = parser.parse_args()
    for checkout in args.checkout or [REPO]:
        with tempfile.TemporaryDirectory(prefix="jobq-profile-startup-") as tmp:
            measure(checkout.resolve(), Path(tmp), args.modules)


if __name__ == "__main__":
    main()
