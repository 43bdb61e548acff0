"""``jobq migrate``: create or upgrade a queue's storage before anything else uses it.

Opening a queue upgrades it too; a deploy runs this first so that the upgrade happens once, at a
time it chose, and ``--check`` asks (exit 1 when one is pending) without changing a thing.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from .. import config as config_mod
from .. import migration


def migrate(args: argparse.Namespace, out: TextIO) -> int:
    done = migration.migrate(config_mod.build(args.dir), check=args.check)
    if not done.pending:
        print(f"{done.where}: {done.kind} is at version {done.current}, this jobq's: nothing"
              " to do", file=out)
        return 0
    was = "nothing made yet" if done.found == 0 else f"{done.kind} was at version {done.found}"
    if args.check:
        print(f"{done.where}: {was}; this jobq's is version {done.current}: run jobq migrate",
              file=out)
        return 1
    print(f"{done.where}: {was}, now at version {done.current}", file=out)
    return 0
