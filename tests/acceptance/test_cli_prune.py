"""``pgq prune``: by an App's retention or --older-than, and its one-line errors."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.acceptance.test_cli import assert_one_line_error, run, run_process
from tests.conftest import subprocess_env

Conn = psycopg.Connection[Any]


def finished(conn: Conn, status: str, hours_ago: float) -> int:
    row = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, status, finished_at) "
        "VALUES ('default', 'add', %s, now() - make_interval(secs => %s)) RETURNING id",
        (status, hours_ago * 3600),
    ).fetchone()
    assert row is not None
    return int(row[0])


def ids(conn: Conn) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM pgq.jobs ORDER BY id")]


def test_prune__older_than_deletes_finished_jobs_of_every_status_or_one(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    old = [finished(conn, status, 3) for status in ("succeeded", "failed", "cancelled")]
    recent = finished(conn, "succeeded", 1)
    waiting = conn.execute(
        "INSERT INTO pgq.jobs (queue, task) VALUES ('default', 'add') RETURNING id"
    ).fetchone()
    assert waiting is not None

    assert run(capsys, "--dsn", dsn, "prune", "--older-than", "2h", "--status", "failed") == (
        0,
        "deleted 1 job(s) (failed 1) in 1 batch(es)\n",
        "",
    )
    code, out, err = run(capsys, "--dsn", dsn, "prune", "--older-than", "2h", "--batch-size", "1")
    assert (code, out, err) == (
        0,
        "deleted 2 job(s) (succeeded 1, cancelled 1) in 5 batch(es)\n",
        "",
    )
    assert ids(conn) == [recent, waiting[0]]
    assert not set(old) & set(ids(conn))


def test_prune__app_applies_its_retention(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    old, recent = finished(conn, "succeeded", 2), finished(conn, "succeeded", 0.5)
    old_failed = finished(conn, "failed", 2)  # pruning_app keeps failed jobs forever

    code, out, err = run(
        capsys, "--dsn", dsn, "prune", "--app", "tests.maintenance_tasks:pruning_app"
    )

    assert (code, out, err) == (0, "deleted 1 job(s) (succeeded 1) in 1 batch(es)\n", "")
    assert ids(conn) == [recent, old_failed] and old not in ids(conn)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error: pass --older-than DURATION, or --app MODULE:APP to apply its retention"),
        (
            ("--status", "failed", "--app", "tests.tasks:app"),
            "Error: --status goes with --older-than",
        ),
        (("--older-than", "soon"), "'soon' is not a duration > 0 such as 90s, 15m, 12h, 7d, 2w"),
        (("--older-than", "0"), "'0' is not a duration > 0"),
        (("--older-than", "1d", "--status", "queued"), "'queued' is not one of"),
        (("--older-than", "1d", "--batch-size", "0"), "0 is not in the range"),
    ],
)
def test_prune__usage_errors_exit_2_and_delete_nothing(
    dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    old = finished(conn, "succeeded", 48)
    code, out, err = run(capsys, "--dsn", dsn, "prune", *args)
    assert (code, out) == (2, "")
    assert message in err
    assert ids(conn) == [old]


def test_prune__an_app_that_keeps_jobs_forever_is_a_one_line_error(dsn: str, conn: Conn) -> None:
    old = finished(conn, "succeeded", 48)
    done = run_process(
        "--dsn",
        dsn,
        "prune",
        "--app",
        "tests.maintenance_tasks:periodic_app",
        env=subprocess_env(dsn),
    )
    assert done.returncode == 1
    assert_one_line_error(done.stderr, "keeps finished jobs forever")
    assert done.stderr.strip() == (
        "pgq: error: this App keeps finished jobs forever (retention=None): pass --older-than "
        "to prune"
    )
    assert ids(conn) == [old]
