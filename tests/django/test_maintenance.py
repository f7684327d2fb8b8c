"""pgq_django's periodic jobs (``@periodic``, in settings.TIME_ZONE), retention
from PGQ["RETENTION"], and ``manage.py pgq_prune``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings

import pgq
from pgq.exceptions import InvalidOptions
from pgq.periodic import Scheduler
from pgq_django import DjangoTask, periodic, task
from pgq_django import app as project_app
from pgq_django.conf import SettingsError, read_settings
from pgq_django.worker import worker_app

UTC = timezone.utc


@pytest.fixture
def declared() -> Iterator[list[str]]:
    """Names of schedules and tasks a test declares on the project's App,
    removed afterwards so no other test's worker runs them."""
    names: list[str] = []
    yield names
    for name in names:
        project_app.schedules.pop(name, None)
        project_app.tasks.pop(name, None)


def test_periodic__reads_the_cron_in_djangos_time_zone(declared: list[str]) -> None:
    declared += ["tests.digest", "tests.digest_utc"]
    with override_settings(TIME_ZONE="Europe/Paris"):

        @periodic("0 9 * * *")
        @task(name="tests.digest")
        def digest() -> None:
            pass

        @periodic("0 9 * * *", timezone="UTC")
        @task(name="tests.digest_utc")
        def digest_utc() -> None:
            pass

    schedule = project_app.schedules["tests.digest"]
    assert isinstance(digest, DjangoTask) and schedule.task is digest
    assert schedule.timezone == "Europe/Paris"
    assert schedule.next_tick(datetime(2025, 1, 15, 12, tzinfo=UTC)) == datetime(
        2025, 1, 16, 8, tzinfo=UTC
    )
    assert project_app.schedules["tests.digest_utc"].timezone == "UTC"
    assert worker_app().schedules == project_app.schedules


def test_periodic__bad_expressions_and_zones_are_one_line_errors() -> None:
    with pytest.raises(InvalidOptions, match=r"^invalid cron expression '0 9 \* \*': expected"):
        periodic("0 9 * *")
    with pytest.raises(InvalidOptions, match=r"^unknown time zone 'Mars/Olympus'"):
        periodic("0 9 * * *", timezone="Mars/Olympus")


def test_periodic__a_worker_enqueues_the_tick_through_its_own_connection(
    committed_db: None, declared: list[str]
) -> None:
    declared.append("tests.hourly")

    @periodic("0 * * * *")
    @task(name="tests.hourly", queue="reports")
    def hourly() -> None:
        pass

    runner = worker_app()

    async def passes() -> None:
        clock = iter(
            [datetime(2025, 1, 15, 12, 30, tzinfo=UTC)]
            + [datetime(2025, 1, 15, 13, 0, 1, tzinfo=UTC)] * 2
        )
        scheduler = Scheduler(runner, clock=lambda: next(clock))
        try:
            await scheduler.run_once()
            await scheduler.run_once()
        finally:
            await scheduler.close()

    asyncio.run(passes())
    (job,) = project_app.list_jobs(task="tests.hourly")
    assert (job.queue, job.run_at) == ("reports", datetime(2025, 1, 15, 13, tzinfo=UTC))


def test_retention__comes_from_pgq_retention() -> None:
    assert project_app.retention == pgq.Retention()  # the defaults
    with override_settings(PGQ={"RETENTION": {"SUCCEEDED": "2h", "FAILED": None}}):
        assert project_app.retention is not None
        assert project_app.retention.age("succeeded") == timedelta(hours=2)
        assert project_app.retention.age("failed") is None
        assert worker_app().retention == project_app.retention
    with override_settings(PGQ={"RETENTION": None}):
        assert project_app.retention is None


def add_finished(status: str, hours_ago: float) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pgq.jobs (queue, task, status, finished_at) "
            "VALUES ('default', 'add', %s, now() - make_interval(secs => %s)) RETURNING id",
            [status, hours_ago * 3600],
        )
        return int(cursor.fetchone()[0])


def job_ids() -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM pgq.jobs ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def prune(*args: str) -> str:
    out = StringIO()
    call_command("pgq_prune", *args, stdout=out)
    return out.getvalue()


def test_pgq_prune__applies_pgq_retention_or_older_than(committed_db: None) -> None:
    old, recent = add_finished("succeeded", 3), add_finished("succeeded", 1)
    old_failed = add_finished("failed", 3)

    with override_settings(PGQ={"RETENTION": {"SUCCEEDED": "2h"}}):
        assert prune() == "deleted 1 job(s) (succeeded 1) in 3 batch(es)\n"
    assert job_ids() == [recent, old_failed]
    assert old not in job_ids()

    assert prune("--older-than", "30m", "--status", "failed") == (
        "deleted 1 job(s) (failed 1) in 1 batch(es)\n"
    )
    assert job_ids() == [recent]


def test_pgq_prune__errors_are_one_line() -> None:
    with pytest.raises(CommandError, match="'soon' is not a duration > 0 such as 90s, 15m"):
        prune("--older-than", "soon")
    with pytest.raises(CommandError) as raised:
        prune("--status", "failed")
    assert str(raised.value) == "--status goes with --older-than"
    assert raised.value.returncode == 2
    with override_settings(PGQ={"RETENTION": None}), pytest.raises(CommandError) as raised:
        prune()
    assert str(raised.value).startswith("this App keeps finished jobs forever")
    assert raised.value.returncode == 1


def test_retention_setting__every_problem_is_reported() -> None:
    with pytest.raises(SettingsError) as raised:
        read_settings({"RETENTION": {"SUCCEEDED": "soon", "BATCH_SIZE": 0, "KEEP": 1}})
    assert raised.value.problems == [
        "PGQ['RETENTION']['SUCCEEDED'] must be a positive duration (a timedelta, seconds, or "
        "text such as '90s', '15m', '12h', '7d', '2w'), got 'soon'",
        "PGQ['RETENTION']['BATCH_SIZE'] must be an integer from 1 to 100,000, got 0",
        "PGQ['RETENTION'] has an unknown key 'KEEP' (known: SUCCEEDED, CANCELLED, FAILED, "
        "RESULTS, INTERVAL, BATCH_SIZE)",
    ]
    with pytest.raises(SettingsError, match=r"PGQ\['RETENTION'\] must be a dict or None"):
        read_settings({"RETENTION": "1d"})
