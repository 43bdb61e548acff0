"""The ids of a group's jobs (``q.map``), which tell by themselves which group a job is of.

A member's id is its group's id, a dot and its position; the final job's is the group's id and
``:then``. So an engine learns whether an ending job is a member by looking at its id (no
lookup, no side table of a million rows), and a group's members are one range of the job-id
index: ``[gid + ".", gid + "/")`` (``/`` sorts right after ``.``; ``:then`` sorts outside it).
Group ids start with ``grp-``, which no id made by jobq for a plain job does (32 hex digits).
"""

from __future__ import annotations

from .job_ids import job_ids

PREFIX = "grp-"
THEN = ":then"


def new_group_id() -> str:
    return PREFIX + job_ids.next()


def member_id(group_id: str, pos: int) -> str:
    return f"{group_id}.{pos}"


def then_id(group_id: str) -> str:
    return group_id + THEN


def members_range(group_id: str) -> tuple[str, str]:
    """The job ids of the group's members are ``lo <= id < hi``."""
    return group_id + ".", group_id + "/"


def group_of(job_id: str) -> str | None:
    """The group a member job belongs to, by its id; None for any other job."""
    if not job_id.startswith(PREFIX):
        return None
    group_id, dot, pos = job_id.rpartition(".")
    return group_id if dot and pos.isdigit() else None


def groups_of(job_ids: list[str]) -> list[str]:
    """The group of each member among ``job_ids`` (once per member): cheap for jobs of none."""
    return [g for g in map(group_of, [j for j in job_ids if j.startswith(PREFIX)]) if g]


def is_then(job_id: str) -> bool:
    return job_id.startswith(PREFIX) and job_id.endswith(THEN)


def group_of_then(job_id: str) -> str:
    return job_id[:-len(THEN)]
