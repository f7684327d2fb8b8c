"""A DSN through a transaction-mode pooler: given a separate listen DSN, an App
treats its DSN as pooled and prepares no statement on the server, on its own
connections and on a caller's (the real PgBouncer: tests/acceptance/test_pgbouncer.py)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgq
from pgq.cli import main
from tests import tasks

Conn = psycopg.Connection[Any]


def prepared(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def pooled_app(dsn: str) -> Any:
    # A DSN of its own for LISTEN: the same database, told apart by a parameter.
    tasks.app.configure(dsn=dsn, listen_dsn=make_conninfo(dsn, application_name="pgq-listen"))
    yield tasks.app
    tasks.app.close()
    tasks.app.configure(dsn=None)


def test_listen_dsn__defaults_to_the_dsn_then_the_environment(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQ_LISTEN_DSN", raising=False)
    app = pgq.App(dsn)
    assert (app.listen_dsn, app.pooled) == (dsn, False)
    monkeypatch.setenv("PGQ_LISTEN_DSN", dsn)
    assert (app.listen_dsn, app.pooled) == (dsn, False)  # the same DSN: not pooled
    monkeypatch.setenv("PGQ_LISTEN_DSN", "postgresql://direct/db")
    assert (app.listen_dsn, app.pooled) == ("postgresql://direct/db", True)
    assert pgq.App(dsn, listen_dsn="postgresql://other/db").listen_dsn == "postgresql://other/db"


def test_listen_dsn__a_bad_one_is_refused_at_once(dsn: str) -> None:
    with pytest.raises(pgq.ConfigurationError, match="invalid DSN"):
        pgq.App(dsn, listen_dsn="host=x port")


def test_pooled__no_statement_is_prepared_on_the_pool_or_a_callers_connection(
    pooled_app: pgq.App, dsn: str
) -> None:
    add = pooled_app.get_task("add")
    for i in range(10):  # psycopg prepares a statement from its fifth run
        add.delay(i, 1)
    with pooled_app.connection() as conn:
        assert conn.prepare_threshold is None
        assert prepared(conn) == 0
    with psycopg.connect(dsn) as own:  # psycopg's default threshold, 5
        for i in range(10):
            add.using(connection=own).delay(i, 2)
        assert prepared(own) == 0
        own.commit()


def test_not_pooled__statements_are_prepared_as_usual(app: pgq.App, dsn: str) -> None:
    with psycopg.connect(dsn) as own:
        for i in range(10):
            app.get_task("add").using(connection=own).delay(i, 2)
        assert prepared(own) > 0  # the fast path, where sessions are kept


def test_cli__a_bad_listen_dsn_is_one_line(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--dsn", dsn, "worker", "--app", "tests.tasks:app", "--listen-dsn", "host=x port"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("pgq: error: invalid DSN") and err.count("\n") == 1, err
