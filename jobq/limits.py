"""Limits per key (issue 17): concurrency and rate limits, and unique keys, engine-neutral.

A job enqueued with ``concurrency_key="api"`` runs only while the key's limits allow it: at
most ``concurrency`` jobs of the key running at once (across every worker), and at most
``rate`` starts per ``per`` seconds (a fixed window that starts with the first start after the
last window ended). A job over a limit is simply not claimed: it stays queued, spends no
attempt, and runs when a slot frees or the next window opens. A key with no limit runs
unlimited.

A job enqueued with ``unique_key="invoice-42"`` is not stored if a job of that key has not
ended (queued, waiting, running, failed waiting for its retry): the enqueue returns that job's
id. Once it ends (succeeded, dead, cancelled), the key is free again.

This module holds the pure validation and the queue API's bodies; each engine stores limits
and keys its own way (:mod:`jobq.local.limits`, :mod:`jobq.postgres.limits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import InvalidArgument, InvalidJob
from .job_ids import job_ids

if TYPE_CHECKING:
    from .engine.limits import Limits

__all__ = ["Limit", "check_key", "validate"]

MAX_KEY = 200  # characters: keys are index columns, not documents
_I32 = 2**31 - 1


@dataclass(frozen=True)
class Limit:
    """The limits of one key: ``concurrency`` running at once, ``rate`` starts per ``per``
    seconds (either may be None: no such limit)."""

    key: str
    concurrency: int | None = None
    rate: int | None = None
    per: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "concurrency": self.concurrency, "rate": self.rate,
                "per": self.per}


def check_key(key: Any, what: str = "key", error: type[InvalidArgument] = InvalidArgument
              ) -> str:
    """``key`` if it is a usable key (a non-empty str of at most MAX_KEY characters)."""
    if not isinstance(key, str):
        raise error(f"{what} must be a string, not {type(key).__name__}")
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise error(f"{what} must be 1 to {MAX_KEY} printable characters, not {key!r}")
    return key


def validate(key: Any, concurrency: Any = None, rate: Any = None, per: Any = None) -> Limit:
    """The limit to store, or InvalidArgument naming what is wrong. Both None: no limit
    (:func:`set_limit` removes the key's)."""
    check_key(key, "limit key")
    if concurrency is not None and (not _is_int(concurrency) or not 1 <= concurrency <= _I32):
        raise InvalidArgument(f"concurrency must be an integer >= 1 (or None: no limit), not"
                              f" {concurrency!r}")
    if rate is None and per is not None:
        raise InvalidArgument("per is the window of a rate: give rate too")
    if rate is not None:
        if not _is_int(rate) or not 1 <= rate <= _I32:
            raise InvalidArgument(f"rate must be an integer >= 1 (starts per window), not"
                                  f" {rate!r}")
        if per is None:
            raise InvalidArgument("a rate needs its window: per= seconds (rate=100, per=60)")
        if isinstance(per, bool) or not isinstance(per, (int, float)) \
                or not math.isfinite(per) or per <= 0:
            raise InvalidArgument(f"per must be a positive number of seconds, not {per!r}")
        per = float(per)
    return Limit(key, concurrency, rate, per)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def job_keys(concurrency_key: Any, unique_key: Any) -> tuple[str | None, str | None]:
    """The keys of an enqueue, checked (InvalidJob)."""
    if concurrency_key is not None:
        check_key(concurrency_key, "concurrency_key", InvalidJob)
    if unique_key is not None:
        check_key(unique_key, "unique_key", InvalidJob)
    return concurrency_key, unique_key


# -- the queue API's bodies (Queue delegates here, with its engine's limits) ---------------------

def set_limit(store: Limits, key: str, *, concurrency: int | None = None,
              rate: int | None = None, per: float | None = None) -> Limit | None:
    """Set ``key``'s limits, replacing its old ones; both None removes them. Applies from the
    next claim on."""
    limit = validate(key, concurrency, rate, per)
    if limit.concurrency is None and limit.rate is None:
        store.remove(key)
        return None
    store.put(limit)
    return limit


def remove_limit(store: Limits, key: str) -> bool:
    """Forget ``key``'s limits; False if it had none."""
    return store.remove(check_key(key, "limit key"))


def enqueue_keyed(store: Limits, frame_of: Callable[..., bytes], task: str,
                  args: tuple[Any, ...], kwargs: dict[str, Any], job_id: str | None,
                  options: Any, keys: tuple[str | None, str | None],
                  parents: tuple[str, ...] | list[str]) -> str:
    """Queue.enqueue_call's path for a job with a concurrency or unique key; the id stored (or
    the unended job's of the unique key)."""
    if parents:
        raise InvalidJob("concurrency_key and unique_key cannot be combined with depends_on")
    job_id = job_id or job_ids.next()
    return store.append_keyed(frame_of(task, args, kwargs, job_id, options), job_id, *keys)
