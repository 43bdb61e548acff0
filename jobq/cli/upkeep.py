"""The operator's commands on a queue's storage: purge, compact, backup and verify.

Kept apart from the everyday commands (jobq.cli.commands): each hands its work to
jobq.maintenance and only words the report.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from ..queue import Queue
from ..state import Status
from . import inputs, render
from .commands import importable_cwd

def purge(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    older_than = inputs.parse_duration(args.older_than)
    from ..maintenance import purge as purge_jobs
    statuses = args.status or [s.value for s in Status if s.finished]
    count = purge_jobs(q, statuses=[Status(s) for s in statuses], older_than=older_than)
    print(f"purged {count} job{'s' if count != 1 else ''} ({', '.join(statuses)}) that finished"
          f" more than {args.older_than.strip()} ago", file=out)
    return 0


def compact(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    from ..maintenance import compact as compact_log
    report = compact_log(q)
    if args.json:
        render.as_json(report.__dict__ if hasattr(report, "__dict__") else report, out)
        return 0
    print(f"reclaimed {report.bytes_reclaimed:,} bytes (log and database {report.bytes_before:,}"
          f" -> {report.bytes_after:,}); segments rewritten {report.segments_rewritten}, deleted"
          f" {report.segments_deleted}, skipped {report.segments_skipped}", file=out)
    return 0


def backup(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    from ..maintenance import backup as backup_queue
    report = backup_queue(q, args.dest)
    if args.json:
        render.as_json(report.__dict__, out)
        return 0
    print(f"backed up {report.jobs:,} job{'s' if report.jobs != 1 else ''} to {report.path}"
          f" ({report.segments} log segment{'s' if report.segments != 1 else ''},"
          f" {report.bytes:,} bytes); check it with: jobq verify --dir {report.path}", file=out)
    return 0


VERIFY_EPILOG = """\
exit status:
  0  every job that has not finished can be read, and every record and snapshot loads;
     damage that no such job depends on (quarantined, or under finished or purged jobs)
     is reported and does not fail the run
  1  a job that has not finished cannot be read (each is named, with its file and
     offset; a worker sets it aside as dead), or a record or snapshot no longer loads
     with today's classes; on PostgreSQL also a job row that disagrees with its record or
     snapshot, or tables that differ from the schema jobq makes
  2  usage error, or the queue cannot be opened or read
"""
VERIFY_CANNOT_RUN = 2


def verify(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    importable_cwd()
    from ..maintenance import verify as verify_queue
    report = verify_queue(q)
    if args.json:
        render.as_json({"ok": report.ok, "records_ok": report.records_ok,
                        "records_failed": report.records_failed,
                        "snapshots_ok": report.snapshots_ok,
                        "snapshots_failed": report.snapshots_failed,
                        "jobs_checked": report.jobs_checked,
                        "jobs_unreadable": report.jobs_unreadable,
                        "unreadable_jobs": report.unreadable,
                        "damaged_ranges": report.damaged_ranges, "ranges": report.ranges,
                        "torn_tail": report.torn_tail,
                        "old_key_records": report.old_key_records,
                        "old_key_snapshots": report.old_key_snapshots,
                        "rows_ok": report.rows_ok, "rows_failed": report.rows_failed,
                        "schema": report.schema,
                        "causes": dict(report.causes), "examples": report.examples}, out)
        return 0 if report.ok else 1
    readable = report.jobs_checked - report.jobs_unreadable
    print(f"{report.records_name:<12} {report.records_ok:>8} ok  {report.records_failed:>6}"
          " failed", file=out)
    print(f"snapshots    {report.snapshots_ok:>8} ok  {report.snapshots_failed:>6} failed", file=out)
    print(f"jobs to run  {readable:>8} ok  {report.jobs_unreadable:>6} unreadable", file=out)
    if report.rows_ok or report.rows_failed:
        print(f"job rows     {report.rows_ok:>8} ok  {report.rows_failed:>6} failed", file=out)
    if report.schema:
        print("\nthe tables differ from the schema this jobq made:", file=out)
        for problem in report.schema:
            print(f"  {problem}", file=out)
    if report.old_key_records or report.old_key_snapshots:
        print(f"old keys     {report.old_key_records:>8} records and {report.old_key_snapshots}"
              " snapshots are signed with an old key (readable; jobq rekey re-signs them)",
              file=out)
    if report.damaged_ranges or report.torn_tail:
        under = report.ranges_under_jobs
        print(f"damaged log ranges {report.damaged_ranges},"
              f" {under or 'none'} under a job that is not finished"
              f"{'; and a torn tail' if report.torn_tail else ''}", file=out)
    if report.unreadable:
        print("\njobs that have not finished and cannot be read (a worker sets each aside as"
              " dead):", file=out)
        for job in report.unreadable:
            copy = f"  copy at {job['saved_to']}" if job["saved_to"] else ""
            print(f"  {job['job_id']}  {job['status']}  {job['file']}:{job['offset']}"
                  f"  {job['reason']}{copy}", file=out)
        _more(report.jobs_unreadable, len(report.unreadable), out)
    if report.ranges:
        print("\ndamaged log ranges:", file=out)
        for r in report.ranges:
            span = f"{r['offset']}-{r['end']}" if r["end"] is not None else f"{r['offset']}-"
            jobs = f"{r['jobs']} job(s) not finished" if r["jobs"] else "no job to run"
            copy = f"copy at {r['saved_to']}" if r["saved_to"] else "not copied aside"
            print(f"  {r['file']}:{span}  {r['reason']}  ({jobs}; {copy})", file=out)
        _more(report.damaged_ranges, len(report.ranges), out)
    if report.causes:
        print("\nfailures by cause:", file=out)
        for cause, n in report.causes.most_common():
            print(f"  {n:>6}  {cause}", file=out)
        print("\nexamples:", file=out)
        for example in report.examples[:5]:
            print(f"  {example['where']}: {example['error'].splitlines()[0]}", file=out)
    print("verify: OK" if report.ok else "verify: FAILED", file=out)
    return 0 if report.ok else 1


def _more(total: int, shown: int, out: TextIO) -> None:
    if total > shown:
        print(f"  ... and {total - shown} more", file=out)
