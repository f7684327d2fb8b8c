"""Periodic jobs: cron schedules declared with ``@app.periodic``, and the
scheduler that every worker runs to enqueue their ticks.

    @app.periodic(cron="0 9 * * mon-fri", timezone="Europe/Paris")
    @app.task
    def morning_report() -> None: ...

Exactly once per tick. Every worker of the App runs a :class:`Scheduler`; at
each tick they all try to move the schedule's row in ``pgq.schedules`` from an
older ``last_tick`` to this one (compare-and-set) and enqueue the job in the
same transaction. One of them moves it; the others find it moved and enqueue
nothing. Ticks are computed by the database's clock, so workers on machines
with skewed clocks agree on them.

Missed ticks. While no worker runs, ticks pass with no job. The first worker
back enqueues ONE job for the latest tick it missed (not one per missed tick),
unless that tick is older than the schedule's ``max_delay``: then the schedule
waits for its next tick. A schedule seen for the first time, or whose
cron or time zone changed, starts with its next tick: ticks from before it
existed are not caught up.

Time zones. The cron expression is read in the schedule's time zone (an IANA
name; UTC by default), the way Debian's cron reads it: a daily time that a
DST change skips runs once right after the gap, one that happens twice runs
once (the first time). Expressions with a sixth, leading field count seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone, tzinfo
from functools import cached_property
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from cronsim import CronSim, CronSimError

from . import db, store
from .exceptions import DatabaseError, InvalidOptions
from .tasks import Task
from .validation import duration

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("pgq.periodic")

UTC = timezone.utc

# The nicknames cron understands that name a time (not @reboot).
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# The scheduler reads the database's clock at least this often, whatever the
# next tick, so that a clock change or a lost connection is noticed.
MAX_SLEEP = 60.0
# Past the tick, so that the database's clock has reached it when we look.
WAKE_MARGIN = 0.005
# A statement unanswered this long: the connection is replaced.
STATEMENT_TIMEOUT = 30.0
# Back-off after a failure, doubled up to the maximum.
RETRY_DELAYS = (1.0, 60.0)


def cron_expression(value: Any) -> str:
    """A valid 5-field (or 6-field, seconds first) expression, or a nickname."""
    if not isinstance(value, str):
        raise InvalidOptions(f"cron must be a cron expression string, got {value!r}")
    expression = NICKNAMES.get(value.strip().lower(), value.strip())
    try:
        iterator = CronSim(expression, datetime.now(UTC))
    except CronSimError as exc:
        raise InvalidOptions(f"invalid cron expression {value!r}: {_reason(exc)}") from None
    try:
        next(iterator)
    except StopIteration:
        raise InvalidOptions(f"invalid cron expression {value!r}: it never matches") from None
    return expression


def _reason(exc: CronSimError) -> str:
    text = str(exc) or "not a cron expression"
    if text == "Wrong number of fields":
        return (
            "expected 5 fields (minute hour day-of-month month day-of-week), or 6 (seconds first)"
        )
    return text[0].lower() + text[1:]


def time_zone(value: Any) -> tuple[tzinfo, str]:
    """The tzinfo for an IANA name (or a ZoneInfo), and its name."""
    if value is UTC or value == "UTC":
        return UTC, "UTC"  # needs no time zone database
    if isinstance(value, ZoneInfo):
        return value, str(value.key)
    if isinstance(value, str):
        try:
            return ZoneInfo(value), value
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidOptions(
        f"unknown time zone {value!r}: use an IANA name such as 'Europe/Paris' or 'UTC'"
    )


def schedule_name(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or "\x00" in value:
        raise InvalidOptions(f"invalid schedule name {value!r}: use 1-200 characters, no NUL")
    return value


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """One cron schedule of a task, with the arguments its jobs get."""

    name: str
    task: Task[Any, Any] = field(repr=False)
    cron: str
    timezone: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_delay: timedelta | None = None

    @classmethod
    def declare(
        cls,
        task: Any,
        *,
        cron: Any,
        timezone: Any = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        max_delay: Any = None,
    ) -> Schedule:
        """A checked schedule: every bad option is an ``InvalidOptions`` (bad
        arguments a ``SerializationError``), raised here rather than by a worker."""
        expression = cron_expression(cron)
        _, zone_name = time_zone(timezone)
        if not isinstance(task, Task):
            raise InvalidOptions(
                f"periodic() schedules a task, got {task!r}: put @app.periodic(...) above "
                "@app.task (or call app.periodic(...)(task))"
            )
        if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
            raise InvalidOptions(f"periodic(args=...) must be a list or tuple, got {args!r}")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidOptions(f"periodic(kwargs=...) must be a dict, got {kwargs!r}")
        schedule = cls(
            name=schedule_name(task.name if name is None else name),
            task=task,
            cron=expression,
            timezone=zone_name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            max_delay=None if max_delay is None else duration(max_delay, "max_delay"),
        )
        task._new_job(schedule.args, schedule.kwargs)  # JSON and size checked now
        return schedule

    @cached_property
    def zone(self) -> tzinfo:
        return time_zone(self.timezone)[0]

    @property
    def row(self) -> store.ScheduleRow:
        return store.ScheduleRow(self.name, self.task.name, self.cron, self.timezone)

    def latest_tick(self, now: datetime) -> datetime | None:
        """The latest tick at or before ``now`` (in UTC); None if none in 50 years."""
        if now.microsecond == 0:  # CronSim steps back a second first unless given a fraction
            now += timedelta(microseconds=1)
        try:
            return next(CronSim(self.cron, now.astimezone(self.zone), reverse=True)).astimezone(UTC)
        except StopIteration:
            return None

    def next_tick(self, now: datetime) -> datetime | None:
        """The first tick after ``now`` (in UTC); None if none in 50 years."""
        try:
            return next(CronSim(self.cron, now.astimezone(self.zone))).astimezone(UTC)
        except StopIteration:
            return None

    def new_job(self, tick: datetime) -> store.NewJob:
        """The job of ``tick``: the task's options, due at the tick."""
        return replace(self.task._new_job(self.args, self.kwargs), run_at=tick, delay=0.0)


class Scheduler:
    """Enqueues the ticks of an App's schedules, on a connection of its own.

    ``clock`` replaces the database's clock (tests); ``run()`` loops until
    cancelled, ``run_once()`` handles what is due now.
    """

    def __init__(self, app: App, *, clock: Callable[[], datetime] | None = None) -> None:
        self.app = app
        self.schedules = sorted(app.schedules.values(), key=lambda s: s.name)
        self._clock = clock
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._registered = False
        # The latest tick each schedule was handled for by this scheduler.
        self._handled: dict[str, datetime] = {}

    async def run(self) -> None:
        delay = RETRY_DELAYS[0]
        try:
            while True:
                try:
                    wait = await asyncio.wait_for(self.run_once(), STATEMENT_TIMEOUT)
                    delay = RETRY_DELAYS[0]
                except (DatabaseError, psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                    logger.warning("periodic: %s; trying again in %.0fs", exc or "no answer", delay)
                    await self.close()
                    wait, delay = delay, min(delay * 2, RETRY_DELAYS[1])
                except Exception:  # a bug: keep the other services and schedules going
                    logger.exception("periodic: unexpected error; trying again in %.0fs", delay)
                    wait, delay = delay, min(delay * 2, RETRY_DELAYS[1])
                await asyncio.sleep(wait)
        finally:
            await self.close()

    async def run_once(self) -> float:
        """Enqueue the jobs of the ticks due now; returns the seconds until the next tick."""
        conn = await self._connection()
        now = self._clock() if self._clock else await db.arun(conn, store.database_now())
        if not self._registered:
            for schedule in self.schedules:
                baseline = schedule.latest_tick(now) or now
                await db.arun(conn, store.register_schedule(schedule.row, baseline))
            self._registered = True
        for schedule in self.schedules:
            tick = schedule.latest_tick(now)
            handled = self._handled.get(schedule.name)
            if tick is None or (handled is not None and tick <= handled):
                continue
            try:
                await self._enqueue(conn, schedule, tick, now)
            except (DatabaseError, psycopg.Error, OSError):
                raise  # the connection or the database: the whole pass is tried again
            except Exception:  # this job could not be built (a unique= function that raised)
                logger.exception("schedule=%s tick=%s skipped", schedule.name, tick.isoformat())
            self._handled[schedule.name] = tick
        upcoming = [t for s in self.schedules if (t := s.next_tick(now)) is not None]
        if not upcoming:
            return MAX_SLEEP
        return min(MAX_SLEEP, (min(upcoming) - now).total_seconds() + WAKE_MARGIN)

    async def _enqueue(
        self, conn: psycopg.AsyncConnection[Any], schedule: Schedule, tick: datetime, now: datetime
    ) -> None:
        late = (now - tick).total_seconds()
        if schedule.max_delay is not None and now - tick > schedule.max_delay:
            # Moved to without a job, so that one worker (not each) says so.
            if await db.arun(conn, store.skip_tick(schedule.row, tick)):
                logger.warning(
                    "schedule=%s tick=%s skipped: %.0fs late, over its max_delay",
                    schedule.name,
                    tick.isoformat(),
                    late,
                )
            return
        with db.translated_errors():
            async with conn.transaction():
                row = await db.arun(
                    conn, store.enqueue_tick(schedule.row, tick, schedule.new_job(tick))
                )
        if row is not None:
            logger.info(
                "schedule=%s tick=%s job=%d task=%s%s",
                schedule.name,
                tick.isoformat(),
                row["id"],
                schedule.task.name,
                f" late={late:.1f}s" if late >= 1 else "",
            )

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.broken or self._conn.closed:
            self._conn = await db.aconnect(self.app.dsn, autocommit=True)
        return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
