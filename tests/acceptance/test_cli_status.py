"""``pgq status``: the per-queue table, --json, --watch, and the cost of its query."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store
from pgq.queries import QUERIES
from pgq.status import COLUMNS
from tests import tasks
from tests.acceptance.test_cli import run
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until

Conn = psycopg.Connection[Any]


def finished_ago(conn: Conn, job_id: int, interval: str) -> None:
    conn.execute(
        "UPDATE pgq.jobs SET finished_at = now() - %s::interval WHERE id = %s", [interval, job_id]
    )


@pytest.fixture
def mixed_queue(app: pgq.App, conn: Conn) -> Iterator[None]:
    """default: succeeded 1 just now and 1 two minutes ago, failed 1 just now and 1
    two hours ago, 1 ready echo (no live worker knows echo), 1 scheduled add.
    images: 1 add running, 1 ready. One live worker that knows only add."""
    tasks.add.delay(1, 1)
    old_success = tasks.add.delay(2, 2)
    tasks.fail_now.delay()
    old_failure = tasks.fail_now.delay()
    app.run_worker(burst=True)
    finished_ago(conn, old_success.id, "2 minutes")
    finished_ago(conn, old_failure.id, "2 hours")
    tasks.echo.delay("hello")
    tasks.add.using(run_after=3600).delay(0, 0)
    tasks.add.using(queue="images").delay(2, 2)
    tasks.add.using(queue="images").delay(3, 3)
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "elsewhere", 4242, None, ["add"], 2, 60))
    [claimed] = app.execute(store.claim_jobs(worker_id, ["images"], ["add"], 1))
    assert claimed["status"] == "running"
    yield


def test_status__one_row_per_queue_workers_and_orphaned_task_warning(
    mixed_queue: None, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--dsn", dsn, "status")

    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == list(COLUMNS)
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:3]}
    # queued (ready), scheduled, running, failed in the last hour, jobs/s over a minute
    assert rows["default"][:5] == ["1", "1", "0", "1", "0.02"]
    assert rows["images"][:5] == ["1", "0", "1", "0", "0.00"]
    assert re.fullmatch(r"\d+\.\ds", rows["images"][5])
    assert "live workers: 1" in lines
    assert any("pid=4242" in line and "concurrency=2" in line for line in lines)
    assert (
        "warning: 1 job(s) of task 'echo' in queue 'default' wait for a worker that knows the task"
        in lines
    )


def test_status_json__per_queue_numbers_workers_and_orphans(
    mixed_queue: None, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--dsn", dsn, "status", "--json")

    assert code == 0
    report = json.loads(out)
    queues = {row.pop("queue"): row for row in report["queues"]}
    assert queues["default"]["oldest_waiting_s"] >= 0
    assert queues["images"]["oldest_waiting_s"] >= 0
    for row in queues.values():
        del row["oldest_waiting_s"]
    assert queues == {
        "default": {
            "queued": 1,
            "scheduled": 1,
            "running": 0,
            "failed_last_hour": 1,
            "succeeded_last_minute": 1,
            "throughput_per_s": round(1 / 60, 3),
        },
        "images": {
            "queued": 1,
            "scheduled": 0,
            "running": 1,
            "failed_last_hour": 0,
            "succeeded_last_minute": 0,
            "throughput_per_s": 0.0,
        },
    }
    [worker] = report["workers"]
    assert (worker["pid"], worker["alive"], worker["tasks"]) == (4242, True, ["add"])
    assert report["orphaned_tasks"] == [{"queue": "default", "task": "echo", "count": 1}]


def test_status__empty_database(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--dsn", dsn, "status") == (
        0,
        "no jobs waiting, running or finished lately\n\nlive workers: 0\n",
        "",
    )


def test_status__old_history_alone_shows_no_queue(
    app: pgq.App, conn: Conn, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tasks.add.delay(1, 1)
    app.run_worker(burst=True)
    finished_ago(conn, job.id, "2 hours")

    code, out, _ = run(capsys, "--dsn", dsn, "status")

    assert code == 0
    assert out.startswith("no jobs waiting, running or finished lately\n")


def test_status_watch__redraws_until_ctrl_c_then_exits_0(
    app: pgq.App, dsn: str, tmp_path: Path
) -> None:
    tasks.add.using(queue="watched").delay(1, 1)
    output = tmp_path / "watch.out"
    with open(output, "w") as out:
        process = subprocess.Popen(
            pgq_command(dsn, "status", "--watch", "0.1"),
            cwd=ROOT,
            env=subprocess_env(dsn),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_until(lambda: output.read_text().count("pgq status at ") >= 2)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.read_text()
    assert "\033[" not in text  # not a terminal: frames follow each other, no clearing
    frames = [f for f in text.split("pgq status at ") if f]
    assert len(frames) >= 2
    assert all(re.search(r"^watched\s+1\s+0\s+0\s+0\s", f, re.MULTILINE) for f in frames)
    assert "Traceback" not in text


def test_status_watch__does_not_go_with_json(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--dsn", dsn, "status", "--json", "--watch")
    assert code == 2
    assert "--watch redraws a table: it does not go with --json" in err


def test_status_watch__interval_must_be_positive(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "--dsn", dsn, "status", "--watch", "0")
    assert code == 2
    assert "--watch" in err


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def test_status_query__reads_indexes_not_the_history(conn: Conn) -> None:
    """On 100k finished jobs (and a backlog), no part of the statement scans the table."""
    conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, status, attempts, started_at, finished_at)
        SELECT 'q' || (i % 5), 'add',
               (CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END)::pgq.job_status, 1,
               now() - make_interval(secs => i * 0.5), now() - make_interval(secs => i * 0.5)
        FROM generate_series(1, 100000) AS i
        """
    )
    conn.execute("INSERT INTO pgq.jobs (queue, task) SELECT 'q', 'a' FROM generate_series(1, 500)")
    conn.execute("ANALYZE pgq.jobs")

    [[explained]] = conn.execute("EXPLAIN (FORMAT JSON) " + QUERIES["queue_overview"]).fetchall()

    scans = [
        node["Node Type"]
        for node in plan_nodes(explained[0]["Plan"])
        if node.get("Relation Name") == "jobs"
    ]
    assert len(scans) == 4 and "Seq Scan" not in scans, scans
