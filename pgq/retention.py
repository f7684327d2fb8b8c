"""Retention: finished jobs are deleted once old enough, and results cleared,
so that pgq.jobs stays small however long the system runs.

    app = pgq.App(retention=pgq.Retention(succeeded="1d", failed="30d", cancelled="7d"))
    app = pgq.App(retention=None)          # keep every job forever

Every worker runs a :class:`Pruner` each ``interval``; one of them works at
a time: each batch takes an advisory lock for its own transaction (never one
held across transactions, so pruning works through a transaction-mode pooler
such as PgBouncer), and a pruner whose batch finds it taken stops its run,
leaving the rest to the one at work. A job counts from
when it finished (``finished_at``); waiting and running jobs are never
touched. Rows go in batches of ``batch_size``, each a statement that commits
on its own and locks only finished rows, which claims never read, skipping
any that another transaction holds: pruning never makes a worker wait.
``pgq prune`` runs the same batches once, from the command line.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast

import psycopg

from . import db, store
from .db import Operation
from .exceptions import DatabaseError, InvalidOptions
from .migrate import check_schema
from .validation import duration

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("pgq.retention")

# A timedelta, seconds, or text such as "7d" (see pgq.validation.duration).
Duration = timedelta | float | str

FINISHED = ("succeeded", "cancelled", "failed")
MAX_BATCH_SIZE = 100_000
# Results of jobs that finished this long before the previous run's cut-off
# are looked at again: a transaction may commit a finished_at a little older
# than one committed before it.
RESULTS_OVERLAP = timedelta(minutes=1)
_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, kw_only=True)
class Retention:
    """How long finished jobs are kept, by status (None: forever).

    succeeded, cancelled, failed: age (since the job finished) past which the
        job is deleted. Defaults: 1 day, 7 days, 30 days.
    results: age past which the result of a succeeded job is cleared while the
        job itself is kept (None, the default: kept as long as the job).
    interval: time between two runs in a worker (default 5 minutes).
    batch_size: rows per statement (default 1,000).
    """

    succeeded: Duration | None = timedelta(days=1)
    cancelled: Duration | None = timedelta(days=7)
    failed: Duration | None = timedelta(days=30)
    results: Duration | None = None
    interval: Duration = timedelta(minutes=5)
    batch_size: int = 1000

    def __post_init__(self) -> None:
        for name in (*FINISHED, "results"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, duration(value, f"retention {name}"))
        object.__setattr__(self, "interval", duration(self.interval, "retention interval"))
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise InvalidOptions(
                f"retention batch_size must be an integer from 1 to {MAX_BATCH_SIZE:,}, "
                f"got {size!r}"
            )

    def age(self, name: str) -> timedelta | None:
        """The retention of a status (or of "results"), as a timedelta."""
        return cast("timedelta | None", getattr(self, name))

    @property
    def interval_seconds(self) -> float:
        return cast(timedelta, self.interval).total_seconds()

    @classmethod
    def older_than(
        cls, age: Duration, statuses: tuple[str, ...] = FINISHED, batch_size: int = 1000
    ) -> Retention:
        """Every job of ``statuses`` that finished more than ``age`` ago (``pgq prune``)."""
        unknown = set(statuses) - set(FINISHED)
        if unknown:
            raise InvalidOptions(
                f"only finished jobs are pruned ({', '.join(FINISHED)}), "
                f"got {', '.join(sorted(unknown))}"
            )
        return cls(
            succeeded=age if "succeeded" in statuses else None,
            cancelled=age if "cancelled" in statuses else None,
            failed=age if "failed" in statuses else None,
            batch_size=batch_size,
        )


def retention_option(value: Any) -> Retention | None:
    if value is not None and not isinstance(value, Retention):
        raise InvalidOptions(f"retention must be a pgq.Retention or None, got {value!r}")
    return value


@dataclass
class PruneReport:
    """What one run deleted and cleared."""

    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FINISHED, 0))
    results_cleared: int = 0
    batches: int = 0
    # Results of jobs finished before this were cleared (None: results are kept).
    results_before: datetime | None = None
    # Stopped early: another pruner's batch was running (exclusive runs only).
    yielded: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def __str__(self) -> str:
        counts = ", ".join(f"{status} {count}" for status, count in self.deleted.items() if count)
        text = f"deleted {self.total} job(s)" + (f" ({counts})" if counts else "")
        if self.results_before is not None:
            text += f", cleared {self.results_cleared} result(s)"
        return f"{text} in {self.batches} batch(es)"


def prune(
    retention: Retention,
    now: datetime,
    results_after: datetime | None = None,
    *,
    exclusive: bool = False,
) -> Operation[PruneReport]:
    """Delete (and clear results) in batches, each its own statement: run it on
    a connection in autocommit mode, so that every batch commits on its own.
    ``exclusive``: stop (``report.yielded``) where another pruner's batch runs."""
    report = PruneReport()
    limit = retention.batch_size
    for status in FINISHED:
        age = retention.age(status)
        if age is None:
            continue
        while True:
            deleted = yield from store.delete_finished_jobs(
                status, now - age, limit, exclusive=exclusive
            )
            if deleted is None:
                report.yielded = True
                return report
            report.batches += 1
            report.deleted[status] += deleted
            if deleted < limit:
                break
    age = retention.age("results")
    if age is not None:
        after, before = results_after or _EPOCH, now - age
        while True:
            batch = yield from store.clear_results(after, before, limit, exclusive=exclusive)
            if batch is None:
                report.yielded = True
                return report  # results_before unset: the next run starts from after
            report.batches += 1
            cleared, last = batch
            report.results_cleared += cleared
            if cleared < limit:
                break
            after = last or after  # rows before it are done: not read again
        report.results_before = before
    return report


def prune_now(dsn: str, retention: Retention) -> PruneReport:
    """One run, now, from this process (``pgq prune``)."""
    with db.connect(dsn, autocommit=True) as conn:
        db.run(conn, check_schema())
        now = db.run(conn, store.database_now())
        return db.run(conn, prune(retention, now))


class Pruner:
    """Applies an App's retention every ``interval``, from inside a worker."""

    def __init__(self, app: App, retention: Retention) -> None:
        self.app = app
        self.retention = retention
        self._results_after: datetime | None = None
        self._said_not_allowed = False

    async def run(self) -> None:
        interval = self.retention.interval_seconds
        # Workers started together do not all try at once.
        await asyncio.sleep(random.uniform(0, min(interval, 10.0)))
        while True:
            try:
                await self.run_once()
            except (DatabaseError, psycopg.Error, OSError) as exc:
                logger.warning("retention: %s; trying again in %.0fs", exc, interval)
            except Exception:
                logger.exception("retention: unexpected error; trying again in %.0fs", interval)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    async def run_once(self) -> PruneReport | None:
        """One run; None if this worker may not prune, or another one is at it."""
        conn = await db.aconnect(self.app.dsn, autocommit=True)
        try:
            may_delete, now = await db.arun(conn, store.may_prune())
            if not may_delete:
                if not self._said_not_allowed:
                    logger.warning(
                        "retention: role %r may not delete from pgq.jobs, so this worker "
                        "prunes nothing: grant it DELETE ON pgq.jobs, or run `pgq prune` "
                        "as the owner of schema pgq",
                        conn.info.user,
                    )
                    self._said_not_allowed = True
                return None
            report = await db.arun(
                conn, prune(self.retention, now, self._results_after, exclusive=True)
            )
        finally:
            await conn.close()
        if report.yielded and not report.batches:
            return None  # another worker is pruning
        if report.results_before is not None:
            self._results_after = report.results_before - RESULTS_OVERLAP
        if report.total or report.results_cleared:
            logger.info("retention: %s", report)
        return report
