"""Global options of ``jobq`` are accepted before the subcommand and after it."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import child_env, jobq_command

from jobq import Queue
from jobq.cli.parser import parser as _parser

# (arguments of the option, the attribute it sets, the value it sets)
GLOBALS = [
    (["-v"], "verbose", True),
    (["--verbose"], "verbose", True),
    (["--log-format", "json"], "log_format", "json"),
    (["--log-level", "debug"], "log_level", "debug"),
    (["--dir", "/some/queue"], "dir", "/some/queue"),
]
GLOBAL_IDS = ["v", "verbose", "log-format", "log-level", "dir"]
DEFAULTS = {"verbose": False, "log_format": "auto", "log_level": None, "dir": None}
COMMANDS = [["worker"], ["status"], ["enqueue", "mod:fn"], ["cancel", "some-id"], ["verify"],
            ["backup", "dest"]]


def jobq(*args: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env.pop("JOBQ_HOME", None)
    return subprocess.run([*jobq_command(), *args], env=env, text=True, capture_output=True,
                          timeout=120)


@pytest.mark.parametrize("option,attr,value", GLOBALS, ids=GLOBAL_IDS)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_global_option_works_before_and_after_the_subcommand(option, attr, value, command):
    before = _parser().parse_args([*option, *command])
    after = _parser().parse_args([*command, *option])
    assert getattr(before, attr) == value and getattr(after, attr) == value
    # The other global options keep their defaults in both places.
    for name, default in DEFAULTS.items():
        if name != attr:
            assert getattr(before, name) == default and getattr(after, name) == default


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_global_option_given_before_the_subcommand_is_not_reset_by_it(command):
    args = _parser().parse_args(["-v", "--log-format", "json", "--log-level", "error", "--dir",
                                 "/q", *command])
    assert (args.verbose, args.log_format, args.log_level, args.dir) == (True, "json", "error",
                                                                        "/q")
    both = _parser().parse_args(["--log-format", "console", *command, "--log-format", "json"])
    assert both.log_format == "json"  # the later one wins, as for any repeated option


def test_worker_log_format_after_the_subcommand_writes_json_events(tmp_path):
    """`jobq worker --log-format json` runs (it was refused as an unrecognized argument)."""
    qdir = tmp_path / "q"
    with Queue(qdir) as q:
        q.enqueue("jobtasks:add", 1, 2)
    done = jobq("worker", "--burst", "--log-format", "json", "--log-level", "debug",
                "--dir", str(qdir))
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert "job.claimed" in {e["event"] for e in events}  # debug level, as asked after it
    status = jobq("status", "--json", "--dir", str(qdir), "-v")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["succeeded"] == 1


@pytest.mark.parametrize("args", [["status", "--bogus"], ["worker", "--log-format", "xml"],
                                  ["--bogus", "status"], []],
                         ids=["unknown-after", "bad-choice-after", "unknown-before", "none"])
def test_a_usage_error_is_one_line_and_exits_2(tmp_path, args):
    done = jobq(*args, "--dir", str(tmp_path)) if args else jobq()
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobq") and "error:" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
