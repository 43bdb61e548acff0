"""``jobq.cli.parser.parse``: a command line that names its command is parsed by a parser knowing only
that command (issue 19); the result, the output and the exit status are the whole parser's."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import pytest

from jobq.cli.parser import COMMANDS, command_of as _command_of, parse as _parse, parser as _parser

ARGVS = [
    ["worker", "--burst", "--dir", "q"], ["-v", "worker", "-c", "2", "--log-format", "json"],
    ["--dir", "worker", "status"],  # a global option's value that is a command's name
    ["--di", "worker", "status"],  # the same, abbreviated: only the whole parser reads it right
    ["--dir=q", "status", "--json"], ["enqueue", "m:f", "1", "2", "--priority", "3"],
    ["schedule", "add", "n", "m:f", "--cron", "* * * * *"], ["schedule", "list", "--json"],
    ["retry", "--all-dead"], ["purge", "--older-than", "1d", "--status", "dead"],
    ["--log-level", "debug", "workers"], ["migrate", "--check"], ["init", "--shared-group", "g"],
    # errors, help and version: the same text and exit status
    ["worker", "--bogus"], ["nope"], [], ["show"], ["schedule"], ["retry"], ["--help"],
    ["worker", "--help"], ["-h", "worker"], ["--version"], ["worker", "--version"],
    ["dashboard", "--help"], ["--", "worker"],
]


def outcome(parse: Callable[[list[str]], Any], argv: list[str]) -> tuple[Any, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result: Any = vars(parse(argv))
        except SystemExit as exc:
            result = ("exit", exc.code)
    return result, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", ARGVS, ids=[" ".join(a) or "nothing" for a in ARGVS])
def test_parse_is_the_whole_parsers(argv: list[str]) -> None:
    assert outcome(_parse, argv) == outcome(lambda a: _parser().parse_args(a), argv)


def test_every_command_of_the_parser_is_known() -> None:
    """A command missing from COMMANDS would still parse, the slow way: keep the list whole."""
    sub = next(a for a in _parser()._actions if a.dest == "command")
    assert set(sub.choices) == COMMANDS


def test_the_command_is_found_past_global_options() -> None:
    assert _command_of(["--dir", "status", "-v", "worker", "--burst"]) == "worker"
    assert _command_of(["-h", "worker"]) is None
    assert _command_of(["unknown", "worker"]) is None
