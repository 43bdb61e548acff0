"""Every code block of README.md and docs/*.md runs, and every relative link leads somewhere.

Each page runs in a session of its own: a fresh temporary directory (shown in outputs as
``/home/me/app``) with ``JOBQ_HOME`` set to its ``.jobq``, the page's blocks in order:

- ```` ```python title=PATH ```` writes the file PATH (relative to the session directory) for later
  blocks: a tasks module, a producer script. Nothing runs.
- ```` ```python ```` runs as ``python -c`` in the session directory; it fails the test if it exits
  non-zero, so an example checks itself with ``assert``.
- ```` ```console ```` (or ``sh``): every line that starts with ``$ `` is a command, run by bash in
  the session directory with ``jobq`` and ``python`` on PATH (this interpreter, this checkout). A
  line ending in ``\\`` continues on the next. The lines up to the next command are its output,
  stdout and stderr together. When some are shown they must match: runs of spaces count as one,
  blank lines are skipped, ``...`` matches anything within a line and, alone on its line, any
  number of lines, and the values in ``VOLATILE`` match any value of their kind. When none are
  shown, the output is not checked. A command must exit 0 unless its output ends with
  ``(exit status N)``.
- ```` ```console until-stopped ````: commands that run until stopped (a worker without
  ``--burst``). Each ``jobq worker`` runs with ``--burst`` appended, so its options are still
  checked.
- ```` ```LANG no-test=REASON ````: not run, for one of the ``NO_TEST`` reasons only. Any other
  block (no language, another language, a shell block without ``$``) fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import jobq_command

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHOWN_HOME = "/home/me/app"  # where outputs say the session ran

# Why a block may be left out. Nothing else is accepted.
NO_TEST = {
    "install": "creates a virtual environment or installs the project: .ci/run does exactly this,"
               " from a fresh checkout, on every run",
    "suite": "runs the test suite, which holds this test",
    "benchmark": "takes minutes of both CPUs; its figures are in docs/performance.md",
    "diagram": "not code: a file layout",
    "repo-write": "writes files of the checkout (scripts/make_golden.py)",
    "system-users": "creates system users and groups (sudo); tests/test_permissions.py runs the"
                    " same steps as other uids",
    "server": "needs a PostgreSQL server of the reader's; tests/contract/ runs the same API on"
              " one, once per engine",
    "serves": "serves until stopped: tests/dashboard/test_cli.py starts the same command on a free"
              " port and reads its pages",
}
RUNNABLE = {"python", "console", "sh"}

# Values that differ from run to run, matched by kind in shown outputs.
VOLATILE = [
    (re.compile(r"\b[0-9a-f]{32}\b"), "<job id>"),
    (re.compile(r"[\w.-]+-\d+-[0-9a-f]{6}(?:/\d+)?"), "<worker id>"),
    (re.compile(r"\bdemo-[0-9a-f]{6}-\d+\b"), "<demo job>"),
    (re.compile(r"\b\d+[smhd] ago\b"), "<time> ago"),
    (re.compile(r"\bin \d+[smhd]\b"), "in <time>"),
    (re.compile(r"\bpid \d+"), "pid <pid>"),
    (re.compile(r"\bstep \d+\b"), "step <n>"),  # where `jobq demo` kills its worker
]


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    attrs: dict[str, str]
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page (fences at the start of a line)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("```"):
            info = lines[i][3:].split()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            assert i < len(lines), f"{page.name}:{start}: unclosed code block"
            attrs = dict(a.split("=", 1) if "=" in a else (a, "") for a in info[1:])
            found.append(Block(page, start, info[0] if info else "", attrs, "\n".join(body) + "\n"))
        i += 1
    return found


def problems(block: Block) -> list[str]:
    """Why a block would not run (empty when it runs or is left out for an allowed reason)."""
    if "no-test" in block.attrs:
        reason = block.attrs["no-test"]
        return [] if reason in NO_TEST else [
            f"{block.where}: no-test={reason!r} is not one of {sorted(NO_TEST)}"]
    if block.lang not in RUNNABLE:
        return [f"{block.where}: a ```{block.lang} block is not run: make it python or console,"
                f" or mark it no-test=REASON ({', '.join(sorted(NO_TEST))})"]
    if block.lang in ("console", "sh") and not any(
            line.startswith("$ ") for line in block.text.splitlines()):
        return [f"{block.where}: a shell block with no `$ ` command is not run"]
    return []


@dataclass
class Session:
    """One page's examples: a directory, a queue, and the commands and scripts to run them."""

    home: Path
    bin: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, tmp: Path) -> Session:
        home, shims = tmp / "app", tmp / "bin"
        home.mkdir()
        shims.mkdir()
        for name, command in (("jobq", jobq_command()), ("python", [sys.executable]),
                              ("python3", [sys.executable])):
            shim = shims / name
            shim.write_text(f"#!/bin/sh\nexec {shlex.join(command)} \"$@\"\n")
            shim.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQ_")}
        env.update(JOBQ_HOME=str(home / ".jobq"), PATH=f"{shims}{os.pathsep}{env['PATH']}",
                   PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
        return cls(home, shims, env)

    def run(self, args: list[str], timeout: float = 60) -> tuple[int, str]:
        proc = subprocess.Popen(args, cwd=self.home, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{shlex.join(args)} still running after {timeout} s:\n{out}")
        finally:
            try:  # nothing a command started may outlive it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return proc.returncode, out.replace(str(self.home), SHOWN_HOME)


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """The block's commands, each with the output lines shown under it."""
    found: list[tuple[str, list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            found.append((command, []))
        elif found:
            found[-1][1].append(line)
        i += 1
    return found


def normalise(line: str) -> str:
    line = " ".join(line.split())
    for pattern, name in VOLATILE:
        line = pattern.sub(name, line)
    return line


def matches(shown: list[str], actual: str) -> bool:
    """Whether the actual output fits the shown one (see the module docstring)."""
    parts = []
    for line in filter(None, map(normalise, shown)):
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(r"[^\n]*".join(map(re.escape, line.split("..."))) + r"\n")
    text = "".join(f"{line}\n" for line in filter(None, map(normalise, actual.splitlines())))
    return re.fullmatch("".join(parts), text) is not None


def run_block(session: Session, block: Block) -> None:
    if block.lang == "python":
        if "title" in block.attrs:
            path = session.home / block.attrs["title"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.text)
            return
        status, out = session.run([sys.executable, "-c", block.text])
        assert status == 0, f"{block.where}: the example failed (line numbers from the block):\n{out}"
        return
    for command, shown in commands(block):
        if "until-stopped" in block.attrs and re.match(r"jobq\b.*\bworker\b", command):
            command, _, comment = command.partition(" #")
            command += " --burst" + (f"  #{comment}" if comment else "")
        status, out = session.run(["bash", "-c", command])
        expected_status = 0
        if shown and (m := re.fullmatch(r"\(exit status (\d+)\)", shown[-1].strip())):
            expected_status, shown = int(m.group(1)), shown[:-1]
        assert status == expected_status, (
            f"{block.where}: `{command}` exited {status}, not {expected_status}:\n{out}")
        if any(line.strip() for line in shown):
            assert matches(shown, out), (
                f"{block.where}: `{command}` printed\n{out}\nwhich does not fit what the page"
                f" shows:\n" + "\n".join(shown))


def test_every_block_runs_or_says_why_not():
    """A block that is neither run nor left out for a listed reason is a stale example waiting."""
    found = [p for page in PAGES for b in blocks(page) for p in problems(b)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page: Path, tmp_path: Path):
    """The page's examples, in order, in a session of their own, do what the page says."""
    session = Session.make(tmp_path)
    for block in blocks(page):
        if not problems(block) and "no-test" not in block.attrs:
            run_block(session, block)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    found: set[str] = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_relative_links_lead_to_a_file_and_a_heading():
    """A renamed page or heading breaks no link."""
    broken = []
    for page in PAGES:
        for target in links(page):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target}: no such heading")
    assert not broken, "\n".join(broken)


def test_every_docs_page_is_in_the_index():
    index = ROOT / "docs" / "README.md"
    listed = {(index.parent / t.partition("#")[0]).resolve() for t in links(index)}
    missing = [p.name for p in PAGES if p.parent == index.parent and p != index and p not in listed]
    assert not missing, f"docs/README.md does not link to {missing}"


def test_readme_starts_with_the_demo_and_the_test_command_ci_runs():
    """The README's first two blocks are what a new user pastes; .ci/run runs the second."""
    first, second = blocks(ROOT / "README.md")[:2]
    assert first.text.strip().endswith("pip install . && jobq demo"), first.text
    test_command = "pip install '.[test]' && python -m pytest -q"
    assert second.text.strip().endswith(test_command), second.text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "'.[test]'" in ci and "python -m pytest -q" in ci
