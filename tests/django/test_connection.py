"""The project's App: a DATABASES alias as conninfo, Django's connection for enqueues."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from django.db.utils import load_backend
from django.test import override_settings
from psycopg.conninfo import conninfo_to_dict

import pgq
from pgq.db import describe_dsn
from pgq_django import DjangoApp
from pgq_django.connection import conninfo_for, conninfo_for_alias
from tests.django.testapp import tasks

SHOP: dict[str, Any] = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": "shop",
    "USER": "web",
    "PASSWORD": "s3cret word",
    "HOST": "db.internal",
    "PORT": 6543,
    "OPTIONS": {
        "sslmode": "require",
        "options": "-c statement_timeout=5000",
        "isolation_level": 2,  # Django's, not libpq's
        "server_side_binding": True,
        "pool": {"min_size": 2},
    },
}


def wrapper(alias: str, settings_dict: dict[str, Any]) -> Any:
    """A Django connection for these settings (never connected here)."""
    # configure_settings fills in Django's defaults (it insists on a "default" key).
    configured = connections.configure_settings({"default": dict(settings_dict)})["default"]
    return load_backend(configured["ENGINE"]).DatabaseWrapper(configured, alias)


def test_conninfo__libpq_parameters_of_the_alias() -> None:
    dsn = conninfo_for(wrapper("shop", SHOP))
    assert conninfo_to_dict(dsn) == {
        "dbname": "shop",
        "user": "web",
        "password": "s3cret word",
        "host": "db.internal",
        "port": "6543",
        "sslmode": "require",
        "options": "-c statement_timeout=5000",
        "client_encoding": "UTF8",
    }
    assert describe_dsn(dsn) == "postgresql://web@db.internal:6543/shop"  # no password


def test_conninfo__refuses_unknown_aliases_and_other_databases() -> None:
    with pytest.raises(pgq.ConfigurationError, match="'nope', which is not an alias"):
        conninfo_for_alias("nope")
    lite = wrapper("lite", {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})
    with pytest.raises(pgq.ConfigurationError, match="uses the sqlite backend; pgq needs"):
        conninfo_for(lite)
    unnamed = wrapper("unnamed", {**SHOP, "NAME": ""})
    with pytest.raises(pgq.ConfigurationError, match=r"DATABASES\['unnamed'\]: .*supply the NAME"):
        conninfo_for(unnamed)


@pytest.mark.django_db
def test_conninfo__of_the_test_database_connects(app: pgq.App) -> None:
    with psycopg.connect(app.dsn) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row == (connection.settings_dict["NAME"],)


def test_alias__follows_the_pgq_setting() -> None:
    app = DjangoApp()
    with override_settings(PGQ={"DATABASE": "jobs", "POOL_SIZE": 2}):
        assert (app.alias, app.pool_size) == ("jobs", 2)
    assert (app.alias, app.pool_size) == ("default", 4)
    assert DjangoApp(alias="x", pool_size=9).pool_size == 9
    assert "alias=PGQ[DATABASE]" in repr(app)


def test_listen_database__follows_the_pgq_setting(app: pgq.App) -> None:
    with override_settings(PGQ={"LISTEN_DATABASE": "default"}):
        assert app.listen_dsn == conninfo_for_alias("default")
        assert not app.pooled  # the same database the same way: nothing pooled
    assert DjangoApp(alias="default").listen_dsn == conninfo_for_alias("default")


@pytest.mark.django_db
def test_listen_database__pooled_enqueues_prepare_nothing_on_djangos_connection() -> None:
    app = DjangoApp()
    app.configure(dsn=None, listen_dsn=conninfo_for_alias("default") + " application_name=x")
    assert app.pooled
    app.tasks = tasks.add.app.tasks
    connection.ensure_connection()
    # Django never prepares by default; OPTIONS {"prepare_threshold": 5} would.
    connection.connection.prepare_threshold = 5
    try:
        for i in range(10):
            app.execute(pgq.store.insert_job(tasks.add._new_job((i, 1), {})))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cursor.fetchone() == (0,)
    finally:
        connection.connection.prepare_threshold = None


@pytest.mark.django_db
def test_enqueue__uses_djangos_connection_and_reads_back_python_values(app: pgq.App) -> None:
    job = tasks.send_email.delay("a@example.com", subject="hi")
    # Django loads jsonb as text on its connection; pgq's rows still hold Python values.
    assert (job.args, job.kwargs) == (["a@example.com"], {"subject": "hi"})
    assert job.created_at.tzinfo is not None
    fetched = app.get_job(job.id)
    assert fetched.kwargs == {"subject": "hi"}
    assert connection.connection is not None  # the job went through it
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pgq.jobs")  # same transaction: visible
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
@override_settings(USE_TZ=False)
def test_enqueue__keeps_aware_times_without_use_tz() -> None:
    job = tasks.add.delay(1, 2)
    assert job.created_at.tzinfo is not None  # pgq's Job is always aware


@pytest.mark.django_db
def test_explicit_connection__still_wins(app: pgq.App) -> None:
    with psycopg.connect(app.dsn) as own:
        job = tasks.add.using(connection=own).delay(1, 2)
        own.rollback()
    with pytest.raises(pgq.JobNotFound):
        app.get_job(job.id)
