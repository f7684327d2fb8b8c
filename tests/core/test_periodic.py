"""Periodic jobs: declaring schedules, tick arithmetic in time zones (DST
included), and the scheduler against a real database with an injected clock:
one job per tick, the missed-tick rule, definition changes, unique tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

import pgq
from pgq.exceptions import InvalidOptions, SerializationError
from pgq.periodic import Schedule, Scheduler

UTC = timezone.utc
Conn = psycopg.Connection[Any]


def at(text: str) -> datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM[:SS]'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def fresh_app(dsn: str) -> Iterator[pgq.App]:
    """An App of its own, so that schedules declared by a test stay in it."""
    app = pgq.App(dsn, retention=None)
    yield app
    app.close()


def schedule_of(app: pgq.App, cron: str, **options: Any) -> Schedule:
    @app.periodic(cron, **options)
    @app.task(name=options.get("name", "report"))
    def report(*args: Any, **kwargs: Any) -> None:
        pass

    return app.schedules[options.get("name", "report")]


class Clock:
    """The scheduler's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_once(*schedulers: Scheduler) -> None:
    """One pass of each scheduler, all at once (as workers on several machines)."""

    async def passes() -> None:
        try:
            await asyncio.gather(*(s.run_once() for s in schedulers))
        finally:
            for scheduler in schedulers:
                await scheduler.close()

    asyncio.run(passes())


def jobs(conn: Conn) -> list[tuple[str, datetime, Any, Any]]:
    rows = conn.execute("SELECT task, run_at, args, kwargs FROM pgq.jobs ORDER BY id").fetchall()
    return [(task, run_at, args, kwargs) for task, run_at, args, kwargs in rows]


def schedule_row(conn: Conn, name: str) -> tuple[datetime, int | None]:
    row = conn.execute(
        "SELECT last_tick, last_job_id FROM pgq.schedules WHERE name = %s", (name,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


# Ticks.


def test_ticks__five_fields_six_with_seconds_and_nicknames(fresh_app: pgq.App) -> None:
    every_5_min = schedule_of(fresh_app, "*/5 * * * *", name="a")
    every_10_s = schedule_of(fresh_app, "*/10 * * * * *", name="b")
    hourly = schedule_of(fresh_app, "@hourly", name="c")
    now = at("2025-01-15 12:07:30")

    assert every_5_min.latest_tick(now) == at("2025-01-15 12:05")
    assert every_5_min.next_tick(now) == at("2025-01-15 12:10")
    assert every_10_s.latest_tick(now) == at("2025-01-15 12:07:30")  # a tick is its own latest
    assert every_10_s.next_tick(now) == at("2025-01-15 12:07:40")
    assert hourly.cron == "0 * * * *"
    assert hourly.latest_tick(now) == at("2025-01-15 12:00")


def test_ticks__nine_in_paris_is_eight_utc_in_winter_and_seven_in_summer(
    fresh_app: pgq.App,
) -> None:
    nine = schedule_of(fresh_app, "0 9 * * *", timezone="Europe/Paris")

    assert nine.timezone == "Europe/Paris"
    assert nine.next_tick(at("2025-01-15 12:00")) == at("2025-01-16 08:00")
    assert nine.next_tick(at("2025-07-15 12:00")) == at("2025-07-16 07:00")
    # Across the spring change (30 March 2025) and the autumn one (26 October).
    assert nine.next_tick(at("2025-03-29 12:00")) == at("2025-03-30 07:00")
    assert nine.next_tick(at("2025-10-25 12:00")) == at("2025-10-26 08:00")
    assert nine.latest_tick(at("2025-03-30 07:30")) == at("2025-03-30 07:00")


def test_ticks__a_time_dst_skips_runs_once_after_the_gap_one_it_repeats_runs_once(
    fresh_app: pgq.App,
) -> None:
    half_past_two = schedule_of(fresh_app, "30 2 * * *", timezone="Europe/Paris")

    # 02:30 does not exist on 30 March 2025 in Paris: the job runs at 03:00 local.
    assert half_past_two.next_tick(at("2025-03-29 12:00")) == at("2025-03-30 01:00")
    # 02:30 happens twice on 26 October 2025: the job runs the first time only.
    first = half_past_two.next_tick(at("2025-10-25 12:00"))
    assert first == at("2025-10-26 00:30")
    assert half_past_two.next_tick(first) == at("2025-10-27 01:30")


def test_ticks__latest_and_next_agree_around_dst_changes(fresh_app: pgq.App) -> None:
    schedules = [
        schedule_of(fresh_app, cron, name=cron, timezone="America/New_York")
        for cron in ("30 2 * * *", "0 * * * *", "*/20 1-3 * * *")
    ]
    for schedule in schedules:
        for start in (at("2025-03-08 12:00"), at("2025-11-01 12:00")):
            tick = start
            for _ in range(60):
                following = schedule.next_tick(tick)
                assert following is not None and following > tick
                assert schedule.latest_tick(following) == following
                assert schedule.latest_tick(following - timedelta(seconds=1)) == (
                    tick if tick != start else schedule.latest_tick(start)
                )
                tick = following


# Declaring.


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("61 * * * *", "bad minute"),
        ("* * *", "expected 5 fields"),
        ("every hour", "expected 5 fields"),
        ("* 25 * * *", "bad hour"),
        ("0 0 31 2 *", "bad day-of-month"),
        ("@reboot", "expected 5 fields"),
        ("", "expected 5 fields"),
    ],
)
def test_periodic__an_invalid_cron_expression_is_one_line_and_registers_nothing(
    fresh_app: pgq.App, cron: str, reason: str
) -> None:
    with pytest.raises(InvalidOptions) as error:
        fresh_app.periodic(cron)

    message = str(error.value)
    assert message.startswith(f"invalid cron expression {cron!r}: ")
    assert reason in message and "\n" not in message
    assert fresh_app.schedules == {}


@pytest.mark.parametrize("zone", ["Europe/Pariss", "europe/paris", "", "../etc/passwd", 5])
def test_periodic__an_unknown_time_zone_is_one_line(fresh_app: pgq.App, zone: Any) -> None:
    with pytest.raises(InvalidOptions, match=r"^unknown time zone .*: use an IANA name"):
        fresh_app.periodic("0 9 * * *", timezone=zone)
    assert fresh_app.schedules == {}


def test_periodic__below_app_task_or_on_a_function_is_refused(fresh_app: pgq.App) -> None:
    def plain() -> None:
        pass

    with pytest.raises(InvalidOptions, match=r"put @app.periodic\(...\) above @app.task"):
        fresh_app.periodic("* * * * *")(plain)  # type: ignore[arg-type]
    assert fresh_app.schedules == {}


def test_periodic__arguments_that_are_not_json_are_refused_at_declaration(
    fresh_app: pgq.App,
) -> None:
    with pytest.raises(SerializationError, match="argument 'when'"):
        schedule_of(fresh_app, "* * * * *", kwargs={"when": datetime.now(UTC)}, name="a")
    with pytest.raises(InvalidOptions, match=r"args=\.\.\.\) must be a list or tuple"):
        schedule_of(fresh_app, "* * * * *", args="abc", name="b")
    with pytest.raises(InvalidOptions, match="max_delay must be a positive duration"):
        schedule_of(fresh_app, "* * * * *", max_delay=-5, name="c")
    assert fresh_app.schedules == {}


def test_periodic__two_schedules_of_one_task_need_their_own_names(fresh_app: pgq.App) -> None:
    @fresh_app.task(name="digest")
    def digest(kind: str) -> None:
        pass

    fresh_app.periodic("0 * * * *", kwargs={"kind": "hourly"})(digest)
    fresh_app.periodic("0 * * * *", kwargs={"kind": "hourly"})(digest)  # the same again: fine
    with pytest.raises(InvalidOptions, match="already declared as 'digest': give each"):
        fresh_app.periodic("0 0 * * *", kwargs={"kind": "daily"})(digest)
    fresh_app.periodic("0 0 * * *", kwargs={"kind": "daily"}, name="daily-digest")(digest)

    assert sorted(fresh_app.schedules) == ["daily-digest", "digest"]
    assert fresh_app.schedules["daily-digest"].kwargs == {"kind": "daily"}


def test_periodic__a_task_of_another_app_is_refused(fresh_app: pgq.App) -> None:
    other = pgq.App("postgresql://nowhere/x", retention=None)

    @other.task(name="elsewhere")
    def elsewhere() -> None:
        pass

    with pytest.raises(InvalidOptions, match="belongs to another App"):
        fresh_app.periodic("* * * * *")(elsewhere)


# The scheduler.


def test_scheduler__a_new_schedule_starts_with_its_next_tick_then_one_job_per_tick(
    fresh_app: pgq.App, conn: Conn
) -> None:
    schedule_of(fresh_app, "*/5 * * * *", args=(1,), kwargs={"kind": "short"})
    clock = Clock(at("2025-01-15 12:02:30"))
    scheduler = Scheduler(fresh_app, clock=clock)

    run_once(scheduler)
    assert jobs(conn) == []  # 12:00 was due before the schedule existed
    assert schedule_row(conn, "report") == (at("2025-01-15 12:00"), None)

    clock.now = at("2025-01-15 12:05:00.2")
    run_once(scheduler)
    clock.now = at("2025-01-15 12:07")
    run_once(scheduler, Scheduler(fresh_app, clock=clock))  # and a second worker
    assert jobs(conn) == [("report", at("2025-01-15 12:05"), [1], {"kind": "short"})]
    last_tick, last_job = schedule_row(conn, "report")
    assert last_tick == at("2025-01-15 12:05") and last_job is not None


def test_scheduler__many_schedulers_racing_for_one_tick_enqueue_one_job(
    fresh_app: pgq.App, conn: Conn
) -> None:
    schedule_of(fresh_app, "* * * * *")
    clock = Clock(at("2025-01-15 12:00:30"))
    run_once(Scheduler(fresh_app, clock=clock))

    for minute in range(1, 6):
        clock.now = at(f"2025-01-15 12:0{minute}:00.1")
        run_once(*(Scheduler(fresh_app, clock=clock) for _ in range(6)))

    ticks = [run_at for _, run_at, _, _ in jobs(conn)]
    assert ticks == [at(f"2025-01-15 12:0{minute}") for minute in range(1, 6)]


def test_scheduler__after_downtime_the_latest_missed_tick_gets_one_job(
    fresh_app: pgq.App, conn: Conn
) -> None:
    schedule_of(fresh_app, "*/5 * * * *")
    clock = Clock(at("2025-01-15 12:02"))
    run_once(Scheduler(fresh_app, clock=clock))

    clock.now = at("2025-01-15 15:37")  # 3.5 hours without a worker: 42 ticks missed
    run_once(Scheduler(fresh_app, clock=clock))

    assert [run_at for _, run_at, _, _ in jobs(conn)] == [at("2025-01-15 15:35")]


def test_scheduler__a_missed_tick_older_than_max_delay_is_skipped(
    fresh_app: pgq.App, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    schedule_of(fresh_app, "*/5 * * * *", max_delay=60)
    clock = Clock(at("2025-01-15 12:02"))
    run_once(Scheduler(fresh_app, clock=clock))

    clock.now = at("2025-01-15 15:37")  # 15:35 is two minutes late
    run_once(*(Scheduler(fresh_app, clock=clock) for _ in range(3)))
    assert jobs(conn) == []
    assert schedule_row(conn, "report") == (at("2025-01-15 15:35"), None)
    assert caplog.text.count("skipped: 120s late, over its max_delay") == 1  # one worker says so

    clock.now = at("2025-01-15 15:40:30")
    run_once(Scheduler(fresh_app, clock=clock))
    assert [run_at for _, run_at, _, _ in jobs(conn)] == [at("2025-01-15 15:40")]


def test_scheduler__a_changed_cron_starts_afresh_without_catching_up(dsn: str, conn: Conn) -> None:
    before, after = pgq.App(dsn, retention=None), pgq.App(dsn, retention=None)
    schedule_of(before, "*/5 * * * *")
    clock = Clock(at("2025-01-15 12:02"))
    run_once(Scheduler(before, clock=clock))

    schedule_of(after, "0 9 * * *", timezone="Europe/Paris")  # deployed at 14:10
    clock.now = at("2025-01-15 14:10")
    run_once(Scheduler(after, clock=clock))
    assert jobs(conn) == []
    assert conn.execute("SELECT cron, timezone FROM pgq.schedules").fetchall() == [
        ("0 9 * * *", "Europe/Paris")
    ]

    clock.now = at("2025-01-16 08:00:01")
    run_once(Scheduler(after, clock=clock))
    assert [run_at for _, run_at, _, _ in jobs(conn)] == [at("2025-01-16 08:00")]


def test_scheduler__a_unique_task_gets_no_second_job_while_the_first_is_live(
    fresh_app: pgq.App, conn: Conn
) -> None:
    @fresh_app.periodic("* * * * *")
    @fresh_app.task(name="sync", unique=True, queue="sync", priority=5)
    def sync() -> None:
        pass

    clock = Clock(at("2025-01-15 12:00:30"))
    run_once(Scheduler(fresh_app, clock=clock))
    for minute in (1, 2):
        clock.now = at(f"2025-01-15 12:0{minute}:00.1")
        run_once(Scheduler(fresh_app, clock=clock))

    rows = conn.execute("SELECT id, queue, priority, run_at FROM pgq.jobs").fetchall()
    assert len(rows) == 1
    job_id, queue, priority, run_at = rows[0]
    assert (queue, priority, run_at) == ("sync", 5, at("2025-01-15 12:01"))
    assert schedule_row(conn, "sync") == (at("2025-01-15 12:02"), job_id)


def test_scheduler__sleeps_until_the_next_tick_of_any_schedule(fresh_app: pgq.App) -> None:
    schedule_of(fresh_app, "*/5 * * * *", name="a")
    schedule_of(fresh_app, "*/15 * * * * *", name="b")
    scheduler = Scheduler(fresh_app, clock=Clock(at("2025-01-15 12:04:50")))

    async def one_pass() -> float:
        try:
            return await scheduler.run_once()
        finally:
            await scheduler.close()

    assert asyncio.run(one_pass()) == pytest.approx(10.0, abs=0.01)


def test_scheduler__a_job_that_cannot_be_built_skips_its_tick_not_the_others(
    fresh_app: pgq.App, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def flaky_key() -> str:
        calls.append(1)
        if len(calls) > 1:  # fine when declared, not at the tick
            raise RuntimeError("no key today")
        return "key"

    @fresh_app.periodic("* * * * *")
    @fresh_app.task(name="a_flaky", unique=flaky_key)
    def flaky() -> None:
        pass

    schedule_of(fresh_app, "* * * * *", name="b_fine")
    clock = Clock(at("2025-01-15 12:00:30"))
    scheduler = Scheduler(fresh_app, clock=clock)

    run_once(scheduler)
    clock.now = at("2025-01-15 12:01:00.1")
    run_once(scheduler)

    assert [(task, run_at) for task, run_at, _, _ in jobs(conn)] == [
        ("b_fine", at("2025-01-15 12:01"))
    ]
    assert "schedule=a_flaky tick=2025-01-15T12:01:00+00:00 skipped" in caplog.text
    assert "RuntimeError: no key today" in caplog.text
