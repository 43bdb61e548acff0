"""What the user typed, read: job arguments, durations, job ids (or a prefix of one)."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import InvalidArgument, JobNotFound
from ..job_ids import MAX_JOB_ID
from ..queue import Queue


def parse_arg(text: str) -> Any:
    """An ARG is JSON when it parses as JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_kwargs(text: str | None) -> dict[str, Any] | None:
    """The value of --kwargs: a JSON object, or None when not given."""
    if text is None:
        return None
    try:
        kwargs = json.loads(text)
    except ValueError as exc:
        raise InvalidArgument(f"--kwargs is not valid JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise InvalidArgument("--kwargs must be a JSON object, like '{\"key\": 1}'")
    return kwargs


def parse_duration(text: str) -> float:
    """'90s', '15m', '12h', '7d', '2w' -> seconds.

    A bare number is refused: read as seconds, ``--older-than 7`` meant as days would purge
    nearly every finished job.
    """
    match = _DURATION.match(text)
    if not match:
        raise InvalidArgument(f"not a duration: {text!r} (use e.g. 90s, 15m, 12h, 7d)")
    if not match.group(2):
        raise InvalidArgument(f"duration {text!r} has no unit: write {match.group(1)}s,"
                              f" {match.group(1)}m, {match.group(1)}h or {match.group(1)}d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def seconds(text: str) -> float:
    """'60' (a bare number is seconds), '90s', '15m', '12h', '7d', '2w' -> seconds: a ttl or a
    wait, where a number alone has always meant seconds."""
    match = _DURATION.match(text)
    if not match:
        raise InvalidArgument(f"not a number of seconds: {text!r} (e.g. 60, 0, 15m or 7d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def job_id_of(q: Queue, text: str) -> str:
    """The job named by ``text``: its id, or a prefix of exactly one id (as git takes commits)."""
    if not text or len(text) > MAX_JOB_ID or not text.isprintable() or q.engine.exists(text):
        return text  # not an id at all: the command's own check says why
    found = q.engine.ids_starting_with(text, 4)
    if len(found) == 1:
        return found[0]
    if not found:
        raise JobNotFound(f"no job with id {text!r} (nor one starting with it)", job_id=text)
    shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    raise InvalidArgument(f"{text!r} starts several job ids ({shown}): give more of it")
