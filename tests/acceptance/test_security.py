"""Security: no code ever travels in a job row, tasks are found only through
the registry, hostile strings stay data, and workers and producers can run as
least-privilege roles that `pgq grant` sets up."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typing_extensions import LiteralString

import pgq
from pgq import grants, store
from pgq.cli import main
from tests import tasks
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until
from tests.roles import login_role

Conn = psycopg.Connection[Any]

# No code in job rows.

CODE_LOADERS = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}


def code_loader_uses(source: str, filename: str = "<source>") -> list[str]:
    """Imports of (and dynamic imports by name of) modules that load code from bytes."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = getattr(function, "attr", None) or getattr(function, "id", None)
            first = node.args[0]
            if called in ("__import__", "import_module") and isinstance(first, ast.Constant):
                names = [str(first.value)]
        found += [f"{filename}:{node.lineno}: {name}" for name in names if _root(name)]
    return found


def _root(name: str) -> bool:
    return name.split(".")[0] in CODE_LOADERS


def test_no_pickle__the_checker_finds_every_form() -> None:
    source = (
        "import pickle\n"
        "import os, marshal as m\n"
        "from shelve import open\n"
        "import importlib\n"
        "importlib.import_module('dill')\n"
        "__import__('cloudpickle.cloudpickle')\n"
        "x = 'pickle'  # a string or comment saying pickle is fine\n"
    )

    assert [use.split(": ")[1] for use in code_loader_uses(source)] == [
        "pickle",
        "marshal",
        "shelve",
        "dill",
        "cloudpickle.cloudpickle",
    ]


def test_no_pickle__no_module_of_pgq_or_pgq_django_loads_code_from_data() -> None:
    files = sorted([*(ROOT / "pgq").rglob("*.py"), *(ROOT / "pgq_django").rglob("*.py")])
    assert len(files) > 20

    uses = [
        use
        for path in files
        for use in code_loader_uses(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]

    assert uses == []


# Tasks only through the registry.


def test_registry__a_row_naming_a_dotted_function_is_never_run(
    app: pgq.App, conn: Conn, dsn: str, tmp_path: Path
) -> None:
    markers = [tmp_path / name for name in ("system", "eval", "call", "add")]
    hostile = [
        ("os.system", [f"touch {markers[0]}"]),
        ("builtins.eval", [f"__import__('os').system('touch {markers[1]}')"]),
        ("subprocess.call", [["touch", str(markers[2])]]),
        ("tests.tasks.write_ledger", [str(markers[3])]),  # importable, but not a task
    ]
    for task, args in hostile:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, args) VALUES ('default', %s, %s::jsonb)",
            (task, psycopg.types.json.Jsonb(args)),
        )
    legit = tasks.add.delay(1, 2)

    done = subprocess.run(
        pgq_command(dsn, "worker", "--app", "tests.tasks:app", "--burst"),
        cwd=ROOT,
        env=subprocess_env(dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert legit.refresh().status is pgq.JobStatus.SUCCEEDED  # the worker did work
    rows = conn.execute(
        "SELECT task, status::text, attempts, worker_id FROM pgq.jobs WHERE task <> 'add'"
        " ORDER BY id"
    ).fetchall()
    assert rows == [(task, "queued", 0, None) for task, _ in hostile]
    assert [marker.exists() for marker in markers] == [False] * 4


# Hostile strings on the command line are data.

INJECTIONS = ["'; DROP TABLE pgq.jobs; --", "$1", "%s", "%(x)s", "{}", "\\", "'\"", "a\\'b"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli__injection_strings_are_stored_and_filtered_on_as_plain_text(
    app: pgq.App, conn: Conn, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Live workers know these names, so `pgq enqueue` takes them without --app.
    app.execute(store.register_worker(uuid.uuid4(), "host", 1, None, INJECTIONS, 1, 3600))
    ids = {}
    for text in INJECTIONS:
        code, out, err = run_cli(
            capsys, "--dsn", dsn, "enqueue", text, '{"k": 1}', "--unique-key", text
        )
        assert (code, err) == (0, ""), text
        ids[text] = int(out.split()[2])

    for text in INJECTIONS:
        code, out, _ = run_cli(capsys, "--dsn", dsn, "jobs", "--task", text, "--json")
        assert code == 0
        [listed] = pgq_json(out)
        assert (listed["id"], listed["task"], listed["unique_key"]) == (ids[text], text, text)
        code, _, err = run_cli(capsys, "--dsn", dsn, "jobs", "--queue", text)
        assert code == 1 and "invalid queue name" in err

    rows = conn.execute("SELECT task, unique_key FROM pgq.jobs ORDER BY id").fetchall()
    assert rows == [(text, text) for text in INJECTIONS]


def pgq_json(out: str) -> list[dict[str, Any]]:
    value = json.loads(out)
    assert isinstance(value, list)
    return value


# Least-privilege roles.


def test_grant_print__quotes_the_role_as_an_identifier_without_a_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    role = 'app"; DROP TABLE pgq.jobs; --'

    code, out, err = run_cli(
        capsys, "--dsn", "postgresql://nowhere:1/x", "grant", role, "--worker", "--print"
    )

    assert (code, err) == (0, "")
    quoted = '"app""; DROP TABLE pgq.jobs; --"'
    assert out.splitlines() == [
        f"GRANT USAGE ON SCHEMA pgq TO {quoted};",
        f"GRANT SELECT ON pgq.migrations TO {quoted};",
        f"GRANT SELECT, INSERT ON pgq.jobs TO {quoted};",
        f"GRANT USAGE ON SEQUENCE pgq.jobs_id_seq TO {quoted};",
        f"GRANT SELECT ON pgq.workers TO {quoted};",
        f"GRANT SELECT ON pgq.queues TO {quoted};",
        f"GRANT UPDATE ON pgq.jobs TO {quoted};",
        f"GRANT INSERT, UPDATE, DELETE ON pgq.workers TO {quoted};",
        f"GRANT SELECT, INSERT, UPDATE ON pgq.schedules TO {quoted};",
        f"GRANT UPDATE ON pgq.queues TO {quoted};",
    ]
    code, out, _ = run_cli(capsys, "grant", "web", "--producer", "--print")
    assert code == 0
    producer_lines = grants.grant_script(role, "worker").splitlines()[:6]
    assert out.splitlines() == [line.replace(quoted, '"web"') for line in producer_lines]


@pytest.fixture
def worker_role(
    server_dsn: str, dsn: str, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[str, str]]:
    with login_role(server_dsn, dsn) as (role, role_dsn):
        assert run_cli(capsys, "--dsn", dsn, "grant", role, "--worker") == (
            0,
            f"granted worker privileges on schema pgq to {role}\n",
            "",
        )
        yield role, role_dsn


@pytest.fixture
def producer_role(
    server_dsn: str, dsn: str, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[str, str]]:
    with login_role(server_dsn, dsn) as (role, role_dsn):
        assert run_cli(capsys, "--dsn", dsn, "grant", role, "--producer")[0] == 0
        assert run_cli(capsys, "--dsn", dsn, "grant", role, "--producer")[0] == 0  # idempotent
        yield role, role_dsn


HEARTBEAT_AFTER_START: LiteralString = (
    "SELECT heartbeat_at > started_at FROM pgq.workers WHERE hostname <> 'gone'"
)
SESSIONS_OF_ROLE: LiteralString = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"


def scalar(conn: Conn, query: LiteralString, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    return None if row is None else row[0]


def refused(dsn: str, statement: LiteralString) -> str:
    """The SQLSTATE of ``statement`` run as the role of ``dsn`` (it must fail)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return str(exc.sqlstate)
    raise AssertionError(f"{statement!r} was allowed")


def test_worker_role__runs_jobs_heartbeats_and_recovers_a_dead_workers_job(
    app: pgq.App, conn: Conn, worker_role: tuple[str, str], tmp_path: Path
) -> None:
    role, role_dsn = worker_role
    dead = uuid.uuid4()
    conn.execute(
        "INSERT INTO pgq.workers (id, hostname, pid, tasks, concurrency, expires_at)"
        " VALUES (%s, 'gone', 1, '{add}', 1, now() - interval '1 minute')",
        (dead,),
    )
    orphan = tasks.add.delay(20, 22)
    conn.execute(
        "UPDATE pgq.jobs SET status = 'running', attempts = 1, worker_id = %s,"
        " started_at = now() - interval '2 minutes' WHERE id = %s",
        (dead, orphan.id),
    )
    jobs = [tasks.add.delay(1, 2), tasks.async_add.delay(3, 4), tasks.fail_now.delay()]
    log_path = tmp_path / "worker.log"

    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            pgq_command(
                role_dsn, "worker", "--app", "tests.tasks:app", "--heartbeat-interval", "0.2"
            ),
            cwd=ROOT,
            env=subprocess_env(role_dsn),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: orphan.refresh().status is pgq.JobStatus.SUCCEEDED)
        later = tasks.add.delay(5, 5)  # woken by NOTIFY or the poll: either way, as the role
        wait_until(lambda: later.refresh().status is pgq.JobStatus.SUCCEEDED)
        wait_until(lambda: scalar(conn, HEARTBEAT_AFTER_START) is True)
        assert scalar(conn, SESSIONS_OF_ROLE, role) > 0  # the worker runs as the role
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    output = log_path.read_text()
    assert "permission denied" not in output, output
    assert (orphan.result, orphan.attempts) == (42, 2)
    assert [job.refresh().status for job in jobs] == [
        pgq.JobStatus.SUCCEEDED,
        pgq.JobStatus.SUCCEEDED,
        pgq.JobStatus.FAILED,
    ]
    assert conn.execute("SELECT count(*) FROM pgq.workers").fetchone() == (0,)  # dead one too


def test_worker_role__may_not_destroy_or_rewrite_history(worker_role: tuple[str, str]) -> None:
    _, role_dsn = worker_role
    for statement in (
        "DROP TABLE pgq.jobs",
        "TRUNCATE pgq.jobs",
        "DELETE FROM pgq.jobs",
        "DELETE FROM pgq.migrations",
        "INSERT INTO pgq.migrations (name) VALUES ('9999_x')",
        "ALTER TABLE pgq.jobs DROP CONSTRAINT jobs_queue_name",
        "CREATE TABLE pgq.extra (id int)",
    ):
        assert refused(role_dsn, statement) == "42501", statement


def test_producer_role__enqueues_and_reads_but_changes_no_job(
    app: pgq.App,
    conn: Conn,
    dsn: str,
    producer_role: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, role_dsn = producer_role
    producer = pgq.App(role_dsn)
    echo = producer.task(name="echo")(tasks.echo.func)
    try:
        job = echo.using(unique_key="once").delay("hello")
        again = echo.using(unique_key="once").delay("again")
        ids = echo.delay_many([("a",), ("b",)])  # ids from the sequence, rows by COPY
        assert again.id == job.id
        assert producer.get_job(job.id).args == ["hello"]
        assert [producer.get_job(i).args for i in ids] == [["a"], ["b"]]
    finally:
        producer.close()
    app.execute(store.register_worker(uuid.uuid4(), "host", 1, None, ["echo"], 1, 3600))
    code, out, err = run_cli(capsys, "--dsn", role_dsn, "enqueue", "echo", '["by name"]')
    assert out.startswith("enqueued job ")
    assert (code, err) == (0, ""), err
    assert run_cli(capsys, "--dsn", role_dsn, "status")[0] == 0
    assert run_cli(capsys, "--dsn", role_dsn, "jobs")[0] == 0
    before = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()
    assert len(before) == 4

    for statement in (
        "UPDATE pgq.jobs SET status = 'failed'",
        "UPDATE pgq.jobs SET status = 'running'",
        "DELETE FROM pgq.jobs",
        "TRUNCATE pgq.jobs",
        "INSERT INTO pgq.workers (id, hostname, pid, tasks, concurrency, expires_at)"
        " VALUES (gen_random_uuid(), 'fake', 1, '{echo}', 1, now() + interval '1 hour')",
        "DELETE FROM pgq.workers",
    ):
        assert refused(role_dsn, statement) == "42501", statement
    assert conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall() == before


def test_grant__a_role_that_does_not_own_the_schema_cannot_pass_privileges_on(
    dsn: str,
    worker_role: tuple[str, str],
    producer_role: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, worker_dsn = worker_role
    producer, _ = producer_role

    code, out, err = run_cli(capsys, "--dsn", worker_dsn, "grant", producer, "--worker")

    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith('pgq: error: no privileges were granted for "pgq": `pgq grant` runs as')
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT has_table_privilege(%s, 'pgq.jobs', 'UPDATE')", (producer,)
        ).fetchone() == (False,)
