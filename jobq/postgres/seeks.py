"""A settle's rows found by id with plans that read those rows only, whatever the statistics.

When ``jobq_jobs`` is analyzed while its queues are empty (autovacuum does, on a default
server), its statistics say it holds no rows although it keeps its pages: the planner then
estimates one row for any scan of it, and every plan looks as cheap as any other. A settle's
generic plans (jobq.postgres.settle._BEGIN) then read its jobs' rows with a scan of the whole
queue by ``queue`` alone: a drain of 3,000 jobs by two workers ran at 1,348 jobs/s instead of
2,903, one of 20,000 at 146. Even ``queue = $1 AND job_id = $2`` alone was planned on
``jobq_jobs_seq`` (its first column only, the job id a filter): it costs exactly what the
primary key costs then, and is met first.

So a settle's statements leave the planner no such choice:

- its transaction runs :data:`PIN`: no sorts, no bitmap scans, no sequential scans (each
  then costs more than any plan without one), generic plans;
- a row is sought in its table's primary key by :func:`seek` (``job_id`` between the id and
  itself, ``ORDER BY job_id``: only that index returns rows in that order without a sort, and
  it reads that one entry), once for each id (a sub-select of a row of ids);
- the rows written or locked are then reached by their ``ctid``: a TID scan, the one way to
  reach a row by ``ctid`` without a sequential scan; the statement puts no other condition on
  the table that an index could serve (the conditions a row must meet are checked in the
  seek's sub-select, or compare it with the row of ids it joins);
- a claim's ready rows are locked in the ready index's order and written by the ``ctid`` the
  lock returned (the version it locked, which nothing else can change until the commit).

A row reached by ``ctid`` is written only as the statement's snapshot saw it: one another
transaction changed meanwhile (a lease renewed) is not written (after the wait for its lock,
the new version is not at that ``ctid``), where a row found by id would be checked again as
committed and written. So a ctid is used where nothing else can have changed the row: rows the
statement (or the transaction) locked, and a settle's write of its own claims, whose rows not
written go to the path that locks them first (jobq.postgres.settle). A claim whose lock
followed a row to its newer version does not write it: one job fewer claimed, left ready; a
promotion promotes it at the next. Rows locked by id are sought and locked in one sub-select per
id (``LATERAL``, ``FOR UPDATE`` in it: checked again as committed), and written by ``ctid``
in a later statement where a renewal of a lease may race the write (the marks of started
prefetched claims).
"""

from __future__ import annotations

# Each setting for the rest of the transaction (set_config(..., true): it ends with it).
PIN = ("set_config('plan_cache_mode', 'force_generic_plan', true),"
       " set_config('enable_sort', 'off', true), set_config('enable_bitmapscan', 'off', true),"
       " set_config('enable_seqscan', 'off', true)")


def seek(table: str, queue: str, job_id: str, column: str = "ctid") -> str:
    """SQL: ``column`` of the row of job ``job_id`` of ``queue`` (SQL expressions) in ``table``
    (keyed by ``(queue, job_id)``), NULL if there is none; under :data:`PIN`, one probe of the
    primary key."""
    return (f"(SELECT x.{column} FROM {table} x WHERE x.queue = {queue}"
            f" AND x.job_id >= {job_id} AND x.job_id <= {job_id} ORDER BY x.job_id LIMIT 1)")
