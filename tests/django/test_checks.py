"""The PGQ setting and the system checks that explain what is wrong with it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from pgq_django import checks
from pgq_django.conf import PgqSettings, SettingsError, WorkerSettings, get_settings, read_settings


def _messages(**overrides: Any) -> list[tuple[str, str]]:
    with override_settings(**overrides):
        return [(m.id or "", m.msg) for m in checks.check_settings()]


def test_settings__default_when_absent() -> None:
    assert read_settings(None) == PgqSettings()
    assert read_settings({}).worker == WorkerSettings()
    assert WorkerSettings().concurrency == 10  # pgq.WorkerConfig's default


def test_settings__are_read_and_typed() -> None:
    read = read_settings(
        {
            "DATABASE": "jobs",
            "DEFAULT_QUEUE": "mail",
            "MAX_ATTEMPTS": 5,
            "TASK_MODULES": ["tasks", "jobs"],
            "WORKER": {"QUEUES": ["a", "b"], "CONCURRENCY": 4, "SHUTDOWN_GRACE": 0},
        }
    )
    assert (read.database, read.default_queue, read.max_attempts) == ("jobs", "mail", 5)
    assert read.task_modules == ("tasks", "jobs")
    assert (read.worker.queues, read.worker.concurrency) == (("a", "b"), 4)
    assert read.worker.shutdown_grace == 0.0


def test_settings__every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        read_settings(
            {
                "MAX_ATTEMPTS": "3",
                "DEFAULT_QUEUE": "no spaces",
                "TASK_MODULES": "tasks",
                "MAX_ATEMPTS": 3,
                "WORKER": {"CONCURRENCY": 0, "POLL_INTERVAL": True, "THREADS": 2},
            }
        )
    problems = raised.value.problems
    assert (
        "PGQ['MAX_ATTEMPTS'] is invalid: max_attempts must be an integer >= 1, got '3'" in problems
    )
    assert any(p.startswith("PGQ['DEFAULT_QUEUE'] is invalid: invalid queue") for p in problems)
    assert "PGQ['TASK_MODULES'] must be a non-empty list of names, got 'tasks'" in problems
    assert any(p.startswith("PGQ has an unknown key 'MAX_ATEMPTS' (known: ") for p in problems)
    assert "PGQ['WORKER']['CONCURRENCY'] must be an integer >= 1, got 0" in problems
    assert "PGQ['WORKER']['POLL_INTERVAL'] must be a number of seconds > 0, got True" in problems
    assert any("unknown key 'THREADS'" in p for p in problems)
    assert isinstance(raised.value, ImproperlyConfigured)


def test_settings__isolation_options() -> None:
    read = read_settings(
        {"WORKER": {"ISOLATION": "process", "MEMORY_LIMIT_MB": 256, "JOB_TIMEOUT": 60}}
    )
    assert (read.worker.isolation, read.worker.memory_limit_mb) == ("process", 256)
    assert read.worker.job_timeout == 60.0
    with pytest.raises(SettingsError) as raised:
        read_settings({"WORKER": {"ISOLATION": "fork", "MEMORY_LIMIT_MB": 0, "JOB_TIMEOUT": -1}})
    assert raised.value.problems[:3] == [
        "PGQ['WORKER']['ISOLATION'] must be 'thread' or 'process', got 'fork'",
        "PGQ['WORKER']['MEMORY_LIMIT_MB'] must be an integer >= 1, got 0",
        "PGQ['WORKER']['JOB_TIMEOUT'] must be a number of seconds > 0, got -1",
    ]


def test_settings__metrics_port() -> None:
    assert read_settings({}).worker.metrics_port is None
    read = read_settings({"WORKER": {"METRICS_PORT": 9100}})
    assert read.worker.options()["metrics_port"] == 9100
    with pytest.raises(SettingsError) as raised:
        read_settings({"WORKER": {"METRICS_PORT": 70000}})
    assert raised.value.problems == [
        "PGQ['WORKER']: metrics_port must be a port number 1-65535, got 70000"
    ]


def test_settings__worker_options_must_agree() -> None:
    with pytest.raises(SettingsError, match=r"lease_seconds .* at least twice heartbeat_interval"):
        read_settings({"WORKER": {"HEARTBEAT_INTERVAL": 10, "LEASE_SECONDS": 15}})


def test_get_settings__follows_overrides() -> None:
    with override_settings(PGQ={"DEFAULT_QUEUE": "other"}):
        assert get_settings().default_queue == "other"
    assert get_settings().default_queue == "default"


def test_check__passes_on_the_test_project() -> None:
    assert _messages() == []


def test_check__bad_setting_is_an_error() -> None:
    assert _messages(PGQ={"MAX_ATTEMPTS": 0}) == [
        (
            "pgq_django.E001",
            "PGQ['MAX_ATTEMPTS'] is invalid: max_attempts must be an integer >= 1, got 0",
        )
    ]


def test_check__unknown_database_alias_is_an_error() -> None:
    assert _messages(PGQ={"DATABASE": "jobs"}) == [
        ("pgq_django.E002", "PGQ['DATABASE'] is 'jobs', which is not an alias in DATABASES.")
    ]


def test_check__unknown_listen_database_alias_is_an_error() -> None:
    assert _messages(PGQ={"LISTEN_DATABASE": "direct"}) == [
        (
            "pgq_django.E002",
            "PGQ['LISTEN_DATABASE'] is 'direct', which is not an alias in DATABASES.",
        )
    ]


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_check__database_that_is_not_postgresql_is_an_error() -> None:
    databases = {
        "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x"},
        "lite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    }
    assert _messages(DATABASES=databases, PGQ={"DATABASE": "lite"}) == [
        (
            "pgq_django.E003",
            "DATABASES['lite'] uses the sqlite backend (django.db.backends.sqlite3); "
            "pgq needs PostgreSQL.",
        )
    ]


def test_check__psycopg2_is_refused() -> None:
    [error] = checks.driver_errors("default", is_psycopg3=False)
    assert error.id == "pgq_django.E004"
    assert "on psycopg2; pgq needs psycopg 3" in error.msg
    assert checks.driver_errors("default", is_psycopg3=True) == []


@pytest.mark.django_db
def test_database_check__silent_when_schema_and_records_agree() -> None:
    assert checks.check_schema(databases=["default"]) == []
    assert checks.check_schema(databases=None) == []  # not asked for database checks


@pytest.mark.django_db
def test_database_check__warns_when_applied_sql_migrations_are_missing() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM pgq.migrations")  # as after a faked migration
    [warning] = checks.check_schema(databases=["default"])
    assert warning.id == "pgq_django.W001"
    assert "lacks migration(s) 0001_initial" in warning.msg
    assert warning.hint == "Run `manage.py pgq_migrate` to apply them."


@pytest.mark.django_db
def test_database_check__warns_when_django_tables_would_go_to_schema_pgq() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL search_path = pgq, public")  # what "$user" does for role pgq
    [warning] = checks.check_schema(databases=["default"])
    assert warning.id == "pgq_django.W002"
    assert "Django creates its tables in schema 'pgq'" in warning.msg


@pytest.mark.django_db
def test_run_checks__include_the_backend_check() -> None:
    with override_settings(
        TASKS={"default": {"BACKEND": "pgq_django.backend.PgqBackend", "QUEUES": ["ok", "no no"]}}
    ):
        errors = [m for m in run_checks() if m.id == "pgq_django.E010"]
    assert len(errors) == 1
    assert "TASKS['default']['QUEUES']: invalid queue name 'no no'" in errors[0].msg
