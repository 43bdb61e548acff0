"""``jobq rekey``: re-sign what old secret keys signed (:mod:`jobq.local.rekey`,
:mod:`jobq.postgres.rekey`), and say what is left to do. (``status`` and ``verify`` say what is
pending.)"""

from __future__ import annotations

import argparse
from typing import TextIO

from ..queue import Queue
from . import render


def rekey(q: Queue, args: argparse.Namespace, out: TextIO) -> int:
    """Exit 1 if something still needs an old key (written meanwhile with an old current key)."""
    from ..maintenance import rekey as rekey_queue
    report = rekey_queue(q)
    left = report.records_left + report.snapshots_left
    if args.json:
        render.as_json({**{k: v for k, v in report.__dict__.items() if k != "compaction"},
                        "can_drop_old_keys": report.can_drop_old_keys,
                        "compaction": None if report.compaction is None  # PostgreSQL: none
                        else report.compaction.__dict__}, out)
        return 1 if left else 0
    print(f"re-signed {report.records_resigned} log record(s) and {report.snapshots_resigned}"
          " snapshot(s) with the current key", file=out)
    if left:
        print(f"jobq: {report.records_left} record(s) and {report.snapshots_left} snapshot(s)"
              " were signed with an old key meanwhile: a process still signs with it; restart"
              " every producer and worker with the new $JOBQ_SECRET_KEY and run jobq rekey"
              " again", file=out)
    elif report.old_keys_pending:
        print("nothing is signed with an old key any more: remove the old keys from"
              " $JOBQ_OLD_SECRET_KEYS (old_secret_keys) and restart; the first open without"
              " them checks again and retires them", file=out)
    else:
        print("no old key is pending", file=out)
    return 1 if left else 0
