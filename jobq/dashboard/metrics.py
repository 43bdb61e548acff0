"""``/metrics`` in the Prometheus text format (version 0.0.4), written by hand: no dependency.

Counts are the engine's rough counts (each status stops at :data:`jobq.listing.ROUGH_CAP`), so
a scrape costs the same on a queue of a million jobs; ``jobq_jobs_capped`` says which are.
Schedules: how many, and the seconds until each fires next (one small read). Counters and the
job duration histogram come from the totals the engines store (:mod:`jobq.totals`), so they
only grow whatever restarts the dashboard (an index rebuilt from its log counts them again).
"""

from __future__ import annotations

from ..listing import ROUGH_CAP
from ..queue import Queue
from ..totals import BUCKETS, histograms
from ..worker_info import WorkerState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(q: Queue) -> str:
    counts = q.engine.rough_counts()
    oldest = q.engine.oldest_due()
    workers = q.workers()
    lines = ["# HELP jobq_jobs Jobs by status (each counted up to jobq_jobs_count_cap).",
             "# TYPE jobq_jobs gauge"]
    lines += [f'jobq_jobs{{status="{_label(s)}"}} {n}' for s, n in sorted(counts.items())]
    lines += ["# HELP jobq_jobs_capped 1 where a status has at least jobq_jobs_count_cap jobs.",
              "# TYPE jobq_jobs_capped gauge"]
    lines += [f'jobq_jobs_capped{{status="{_label(s)}"}} {int(n >= ROUGH_CAP)}'
              for s, n in sorted(counts.items())]
    lines += ["# HELP jobq_jobs_count_cap Where the job counts stop counting.",
              "# TYPE jobq_jobs_count_cap gauge", f"jobq_jobs_count_cap {ROUGH_CAP}",
              "# HELP jobq_oldest_due_seconds How long the longest-waiting due job has waited"
              " (0: none waits).", "# TYPE jobq_oldest_due_seconds gauge",
              f"jobq_oldest_due_seconds {0.0 if oldest is None else round(oldest, 3)}",
              "# HELP jobq_workers Workers by state.", "# TYPE jobq_workers gauge"]
    lines += [f'jobq_workers{{state="{s.value}"}} {sum(w.state is s for w in workers)}'
              for s in WorkerState]
    busy = sum(1 for w in workers if w.alive for c in w.children if c.job_id)
    lines += ["# HELP jobq_busy_children Children of live workers running a job.",
              "# TYPE jobq_busy_children gauge", f"jobq_busy_children {busy}"]
    stored = q.engine.schedules.all()
    now = q.engine.now()
    lines += ["# HELP jobq_schedules Periodic schedules stored.", "# TYPE jobq_schedules gauge",
              f"jobq_schedules {len(stored)}",
              "# HELP jobq_schedule_next_fire_seconds Seconds until a schedule's next fire time"
              " (below 0: overdue, no worker fired it).",
              "# TYPE jobq_schedule_next_fire_seconds gauge"]
    lines += [f'jobq_schedule_next_fire_seconds{{schedule="{_label(s.schedule.name)}"}}'
              f" {round(s.next_at - now, 3)}" for s in stored]
    return "\n".join(lines + _totals(q)) + "\n"


_HELP = {"enqueued": "Jobs enqueued.", "succeeded": "Jobs that succeeded.",
         "failed": "Jobs that failed for good (dead: attempts or crashes used up).",
         "retried": "Failed attempts scheduled to run again.",
         "redelivered": "Attempts whose worker died, the job due again."}


def _totals(q: Queue) -> list[str]:
    stored = q.engine.totals()
    lines = []
    for name, text in _HELP.items():
        metric = f"jobq_jobs_{name}_total"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter",
                  f"{metric} {int(stored.get((name, ''), 0))}"]
    lines += ["# HELP jobq_job_duration_seconds Attempts that ran, from claim to end, by task.",
              "# TYPE jobq_job_duration_seconds histogram"]
    for task, (cumulative, count, total) in histograms(stored).items():
        t = _label(task)
        lines += [f'jobq_job_duration_seconds_bucket{{task="{t}",le="{b}"}} {n}'
                  for b, n in zip(BUCKETS, cumulative)]
        lines += [f'jobq_job_duration_seconds_bucket{{task="{t}",le="+Inf"}} {count}',
                  f'jobq_job_duration_seconds_sum{{task="{t}"}} {round(total, 6)}',
                  f'jobq_job_duration_seconds_count{{task="{t}"}} {count}']
    return lines
