"""The schema: statuses, migrations (idempotent, concurrent, checked at start),
the claim index, every named query, and the migrations shipped in the wheel."""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.pq import ExecStatus
from typing_extensions import LiteralString

import pgq
from pgq import db, store
from pgq.migrate import all_migrations, migrate, migrations_dir
from pgq.queries import QUERIES
from tests.conftest import ROOT, create_database, dsn_with_dbname, subprocess_env

# Helpers.


def scalar(conn: psycopg.Connection[Any], query: LiteralString, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def applied_names(conn: psycopg.Connection[Any]) -> list[str]:
    return [row[0] for row in conn.execute("SELECT name FROM pgq.migrations ORDER BY name")]


@pytest.fixture(scope="module")
def schema_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """A migrated database shared by the tests that only read it."""
    name = create_database(server_dsn, template_db)
    yield dsn_with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def schema_conn(schema_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(schema_dsn, autocommit=True) as connection:
        yield connection


def app_with_a_task(dsn: str) -> pgq.App:
    app = pgq.App(dsn)
    app.task(name="noop")(_noop)
    return app


def _noop() -> None:
    return None


# Statuses.


def test_job_status__equals_the_sql_enum_labels_in_order(
    schema_conn: psycopg.Connection[Any],
) -> None:
    labels = [
        row[0]
        for row in schema_conn.execute(
            "SELECT enumlabel FROM pg_enum"
            " WHERE enumtypid = 'pgq.job_status'::regtype ORDER BY enumsortorder"
        )
    ]

    assert labels == [status.value for status in pgq.JobStatus]


# Migrations.


def test_migration_files__are_the_checkouts_sql_files_in_order() -> None:
    files = sorted((ROOT / "migrations").glob("*.sql"))
    names = [migration.name for migration in all_migrations()]

    assert migrations_dir() == ROOT / "migrations"
    assert names == [path.stem for path in files]
    assert names == sorted(names)
    assert names[0] == "0001_initial"
    assert all(re.fullmatch(r"\d{4}_\w+", name) for name in names), names
    numbers = [int(name[:4]) for name in names]
    assert numbers == list(range(1, len(names) + 1)), "migration numbers must not skip or repeat"


def test_migrate__applies_every_migration_once_and_records_it(empty_dsn: str) -> None:
    expected = [migration.name for migration in all_migrations()]

    assert migrate(empty_dsn) == expected
    assert migrate(empty_dsn) == []

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert applied_names(conn) == expected
        assert scalar(conn, "SELECT to_regclass('pgq.jobs') IS NOT NULL") is True
        assert scalar(conn, "SELECT to_regclass('pgq.workers') IS NOT NULL") is True


def test_migrate__on_a_migrated_database_applies_nothing(
    schema_dsn: str, schema_conn: psycopg.Connection[Any]
) -> None:
    query: LiteralString = "SELECT name, applied_at FROM pgq.migrations ORDER BY name"
    before = schema_conn.execute(query).fetchall()

    assert migrate(schema_dsn) == []
    assert pgq.App(schema_dsn).migrate() == []

    after = schema_conn.execute(query).fetchall()
    assert after == before


def _migrate_at_the_barrier(dsn: str, barrier: Barrier, results: Queue[tuple[int, Any]]) -> None:
    barrier.wait(timeout=60)
    try:
        results.put((os.getpid(), migrate(dsn)))
    except BaseException as exc:
        results.put((os.getpid(), f"{type(exc).__name__}: {exc}"))
        raise


def test_migrate__concurrent_processes_apply_the_schema_once(empty_dsn: str) -> None:
    processes_count = 4
    # Forked children start at once instead of importing pgq anew, so they really race.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(processes_count)
    results: Queue[tuple[int, Any]] = context.Queue()
    processes = [
        context.Process(target=_migrate_at_the_barrier, args=(empty_dsn, barrier, results))
        for _ in range(processes_count)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=60)[1] for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()

    assert [process.exitcode for process in processes] == [0] * processes_count, outcomes
    expected = [migration.name for migration in all_migrations()]
    assert sorted(outcomes, key=len) == [[]] * (processes_count - 1) + [expected]
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert applied_names(conn) == expected
        assert scalar(conn, "SELECT count(*) FROM pg_type WHERE typname = 'job_status'") == 1


# An unmigrated or partly migrated database.


def test_enqueue__on_an_unmigrated_database_says_to_run_pgq_migrate(empty_dsn: str) -> None:
    app = app_with_a_task(empty_dsn)
    try:
        with pytest.raises(pgq.SchemaNotMigrated, match="`pgq migrate`"):
            app.tasks["noop"].delay()
        with pytest.raises(pgq.SchemaNotMigrated, match="`pgq migrate`"):
            app.get_job(1)
    finally:
        app.close()

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert scalar(conn, "SELECT to_regnamespace('pgq') IS NULL") is True


def test_worker__refuses_to_start_on_an_unmigrated_database(empty_dsn: str) -> None:
    app = app_with_a_task(empty_dsn)
    try:
        with pytest.raises(pgq.SchemaNotMigrated, match="`pgq migrate`"):
            app.run_worker(burst=True)
    finally:
        app.close()

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert scalar(conn, "SELECT to_regnamespace('pgq') IS NULL") is True


def test_worker__names_the_migration_a_database_lacks(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    missing = all_migrations()[-1].name
    conn.execute("DELETE FROM pgq.migrations WHERE name = %s", (missing,))
    app = app_with_a_task(dsn)
    try:
        with pytest.raises(pgq.SchemaNotMigrated) as caught:
            app.run_worker(burst=True)
    finally:
        app.close()

    assert missing in str(caught.value)
    assert "`pgq migrate`" in str(caught.value)
    assert scalar(conn, "SELECT count(*) FROM pgq.workers") == 0


def test_worker__cli_on_an_unmigrated_database_fails_with_one_line(empty_dsn: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "pgq", "--dsn", empty_dsn, "worker", "--app", "tests.tasks:app"],
        cwd=ROOT,
        env=subprocess_env(empty_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert completed.returncode == 1, completed.stderr
    assert "pgq migrate" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_worker__refuses_a_database_migrated_by_a_newer_pgq(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("INSERT INTO pgq.migrations (name) VALUES ('9999_from_a_newer_pgq')")
    app = app_with_a_task(dsn)
    try:
        with pytest.raises(pgq.SchemaTooNew, match="9999_from_a_newer_pgq") as caught:
            app.run_worker(burst=True)
    finally:
        app.close()

    assert "version 9999, newer than this pgq" in str(caught.value)
    assert scalar(conn, "SELECT count(*) FROM pgq.workers") == 0


# The claim query and its index.


def register_worker(conn: psycopg.Connection[Any]) -> uuid.UUID:
    """A registered worker, so the claim's liveness check passes as in production."""
    worker_id = uuid.uuid4()
    db.run(conn, store.register_worker(worker_id, "host", os.getpid(), None, ["add"], 10, 3600))
    return worker_id


def fill_jobs(conn: psycopg.Connection[Any], *, backlog_elsewhere: int = 0) -> None:
    """History that dwarfs the waiting jobs: 5,000 finished jobs, 100 queued ones
    in 'default', and optionally an older backlog waiting in another queue."""
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, status, attempts, started_at, finished_at, result)"
        " SELECT (ARRAY['default', 'mail', 'images'])[1 + i % 3], 'add', 'succeeded', 1,"
        "        now(), now(), '3'"
        " FROM generate_series(1, 5000) AS i"
    )
    if backlog_elsewhere:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task) SELECT 'bulk', 'add' FROM generate_series(1, %s)",
            (backlog_elsewhere,),
        )
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, priority)"
        " SELECT 'default', 'add', i % 3 FROM generate_series(1, 100) AS i"
    )
    conn.execute("ANALYZE pgq.jobs")
    conn.execute("ANALYZE pgq.workers")


@pytest.fixture(scope="module", params=[0, 20_000], ids=["no-backlog", "backlog-in-bulk"])
def claim_db(
    request: pytest.FixtureRequest, server_dsn: str, template_db: str
) -> Iterator[tuple[psycopg.Connection[Any], uuid.UUID]]:
    """Filled and analysed once; the plan tests only EXPLAIN, so they share it."""
    name = create_database(server_dsn, template_db)
    try:
        with psycopg.connect(dsn_with_dbname(server_dsn, name), autocommit=True) as conn:
            worker_id = register_worker(conn)
            fill_jobs(conn, backlog_elsewhere=request.param)
            yield conn, worker_id
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


Scan = tuple[str, "str | None", "str | None"]


def plan_scans(
    conn: psycopg.Connection[Any], query_name: str, params: dict[str, Any]
) -> list[Scan]:
    """(node type, relation, index) of every scan in the plan of a named query."""
    text = scalar(conn, "EXPLAIN (FORMAT JSON) " + QUERIES[query_name], params)
    plan = text if isinstance(text, list) else json.loads(text)
    scans: list[Scan] = []

    def walk(node: dict[str, Any]) -> None:
        if "Scan" in node["Node Type"]:
            index = node.get("Index Name")
            if node["Node Type"] == "Bitmap Heap Scan":  # reads through its bitmap's index
                index = node["Plans"][0].get("Index Name")
            scans.append((node["Node Type"], node.get("Relation Name"), index))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan[0]["Plan"])
    return scans


def claim_params(worker_id: uuid.UUID, queues: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {"worker_id": worker_id, "tasks": ["add", "echo"], "limit": 10}
    if queues is not None:
        params["queues"] = queues
    return params


def seq_scans_of_jobs(scans: list[Scan]) -> list[Scan]:
    return [scan for scan in scans if scan[0] == "Seq Scan" and scan[1] == "jobs"]


def claim_job_indexes(scans: list[Scan]) -> set[str | None]:
    """Indexes the claim reads pgq.jobs through (the join back by primary key aside)."""
    return {index for _, relation, index in scans if relation == "jobs"} - {"jobs_pkey"}


@pytest.mark.parametrize(
    ("query_name", "queues"),
    [
        ("claim_jobs", ["default"]),
        ("claim_jobs", ["default", "mail"]),
        ("claim_jobs_any_queue", None),
    ],
)
def test_claim_plan__reads_a_partial_claim_index_never_the_whole_table(
    claim_db: tuple[psycopg.Connection[Any], uuid.UUID],
    query_name: str,
    queues: list[str] | None,
) -> None:
    conn, worker_id = claim_db

    scans = plan_scans(conn, query_name, claim_params(worker_id, queues))

    assert not seq_scans_of_jobs(scans), scans
    assert claim_job_indexes(scans), scans
    assert claim_job_indexes(scans) <= {"jobs_claim_idx", "jobs_claim_any_queue_idx"}, scans


def test_claim_plan__a_worker_of_every_queue_uses_the_any_queue_index(
    claim_db: tuple[psycopg.Connection[Any], uuid.UUID],
) -> None:
    conn, worker_id = claim_db

    scans = plan_scans(conn, "claim_jobs_any_queue", claim_params(worker_id, None))

    # jobs_claim_idx: paused or limited queues, read one by one (only if there are any).
    assert "jobs_claim_any_queue_idx" in claim_job_indexes(scans), scans
    assert claim_job_indexes(scans) <= {"jobs_claim_any_queue_idx", "jobs_claim_idx"}, scans


def test_claim_plan__a_worker_of_given_queues_uses_jobs_claim_idx(
    claim_db: tuple[psycopg.Connection[Any], uuid.UUID],
) -> None:
    conn, worker_id = claim_db

    scans = plan_scans(conn, "claim_jobs", claim_params(worker_id, ["default"]))

    assert not seq_scans_of_jobs(scans), scans
    assert claim_job_indexes(scans) == {"jobs_claim_idx"}, scans


def test_claim_jobs__takes_the_highest_priority_then_oldest_ready_jobs(
    conn: psycopg.Connection[Any],
) -> None:
    worker_id = register_worker(conn)
    fill_jobs(conn, backlog_elsewhere=50)
    expected = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM pgq.jobs WHERE status = 'queued' AND queue = 'default'"
            " ORDER BY priority DESC, run_at, id LIMIT 10"
        )
    ]

    claimed = db.run(conn, store.claim_jobs(worker_id, ["default"], ["add"], 10))

    assert sorted(row["id"] for row in claimed) == sorted(expected)
    assert {row["priority"] for row in claimed} == {2}
    assert {(row["status"], row["worker_id"], row["attempts"]) for row in claimed} == {
        ("running", worker_id, 1)
    }
    assert scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE status = 'running'") == 10


# Every named query.

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def positional(query: str) -> str:
    """psycopg's %(name)s placeholders as the server's $n."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PLACEHOLDER.sub(number, query)


def statements(query: str) -> list[str]:
    """A named query split at the semicolons that end its lines."""
    return [part for part in re.split(r";[ \t]*(?:\n|$)", query) if part.strip()]


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_named_query__parses_against_the_migrated_schema(
    schema_conn: psycopg.Connection[Any], name: str
) -> None:
    """The server parses and analyses each statement (tables, columns, types,
    operators) without running it, so a typo fails here rather than in a worker."""
    for statement in statements(positional(QUERIES[name])):
        result = schema_conn.pgconn.prepare(b"", statement.encode())
        message = result.error_message.decode(errors="replace").strip()
        assert result.status == ExecStatus.COMMAND_OK, f"{name}: {message}\n{statement}"


# The wheel.


def test_wheel__ships_the_migrations_and_finds_them_when_installed(tmp_path: Path) -> None:
    if importlib.util.find_spec("hatchling") is None:
        pytest.skip("hatchling (the build backend) is not installed; building offline needs it")
    build = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("pgq_jobs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in sorted((ROOT / "migrations").glob("*.sql")):
            shipped = f"pgq/_migrations/{path.name}"
            assert shipped in names, sorted(names)
            assert archive.read(shipped) == path.read_bytes()
        for path in sorted((ROOT / "pgq" / "queries").glob("*.sql")):
            assert f"pgq/queries/{path.name}" in names
        archive.extractall(tmp_path / "site")

    installed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pgq, pgq.migrate as m;"
            " print(pgq.__file__); print(m.migrations_dir());"
            " print(','.join(x.name for x in m.all_migrations()))",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert installed.returncode == 0, installed.stderr
    module_file, found_dir, found_names = installed.stdout.splitlines()
    assert Path(module_file).is_relative_to(tmp_path / "site")
    assert Path(found_dir) == tmp_path / "site" / "pgq" / "_migrations"
    assert found_names == ",".join(migration.name for migration in all_migrations())
