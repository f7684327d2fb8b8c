"""The catalogue in README.md, "Bad input and the errors it gets": each bad
input gets its exception with one clear line (on the command line: that line
on stderr and exit 1, or a usage error and exit 2), and every pgq table is
exactly as it was before."""

from __future__ import annotations

import asyncio
import math
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from typing_extensions import LiteralString

import pgq
from pgq import store
from pgq.app import MAX_ARGUMENT_BYTES
from pgq.cli import main
from pgq.migrate import all_migrations
from tests import tasks
from tests.conftest import ROOT, create_database, dsn_with_dbname, pgq_command, subprocess_env
from tests.roles import login_role

Conn = psycopg.Connection[Any]
Snapshot = dict[str, list[tuple[Any, ...]]]
TABLES: tuple[LiteralString, ...] = (
    "SELECT * FROM pgq.jobs ORDER BY id",
    "SELECT * FROM pgq.workers ORDER BY id",
    "SELECT * FROM pgq.migrations ORDER BY name",
)


def snapshot(conn: Conn) -> Snapshot:
    """Every row of every pgq table."""
    return {query: conn.execute(query).fetchall() for query in TABLES}


def assert_one_line(message: str, prefix: str) -> None:
    assert "\n" not in message, message
    assert message.startswith(prefix), f"{message!r} does not start with {prefix!r}"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_cli_error(err: str, code: int, prefix: str) -> None:
    """Exit 1: exactly one line on stderr. Exit 2: click's usage, ending with the error."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    if code == 1:
        assert len(lines) == 1, err
    assert lines[-1].startswith(prefix), err


@pytest.fixture(scope="module")
def catalogue_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    """One migrated database for the whole catalogue, with a few rows in it so
    that "nothing changed" means something: every test compares all of it."""
    name = create_database(server_dsn, template_db)
    dsn = dsn_with_dbname(server_dsn, name)
    app = pgq.App(dsn)
    try:
        seed = app.task(name="seed")(tasks.echo.func)
        seed.delay(1, key="value")
        seed.using(unique_key="seed-key", queue="other").delay(2)
        app.execute(store.register_worker(uuid.uuid4(), "host", 1, None, ["seed"], 1, 3600))
    finally:
        app.close()
    yield dsn
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def unchanged(catalogue_dsn: str) -> Iterator[Conn]:
    """tests.tasks.app on the catalogue database, which must end as it began."""
    with psycopg.connect(catalogue_dsn, autocommit=True) as conn:
        before = snapshot(conn)
        tasks.app.configure(dsn=catalogue_dsn)
        try:
            yield conn
        finally:
            tasks.app.close()
            tasks.app.configure(dsn=None)
        assert snapshot(conn) == before


# The Python API.

NAIVE = datetime(2030, 1, 1, 12, 0)
ApiCase = tuple[Callable[[], Any], type[pgq.PgqError], str]
API: dict[str, ApiCase] = {
    "non-JSON argument": (
        lambda: tasks.echo.delay(1, object()),
        pgq.SerializationError,
        "echo: positional argument 1 is not JSON-serializable (object): "
        "Object of type object is not JSON serializable",
    ),
    "NaN argument": (
        lambda: tasks.echo.delay(ratio=math.nan),
        pgq.SerializationError,
        "echo: argument 'ratio' is not JSON-serializable (float): Out of range float values",
    ),
    "NUL in an argument": (
        lambda: tasks.echo.delay(text="a\x00b"),
        pgq.SerializationError,
        "echo: argument 'text' is not JSON-serializable (str): contains a NUL character",
    ),
    "lone surrogate in an argument": (
        lambda: tasks.echo.delay("\udcff"),
        pgq.SerializationError,
        "echo: positional argument 0 is not JSON-serializable (str): contains a lone surrogate",
    ),
    "nested too deeply": (
        lambda: tasks.echo.delay(_nested(5000)),
        pgq.SerializationError,
        "echo: positional argument 0 is not JSON-serializable (list): is nested too deeply",
    ),
    "oversized arguments": (
        lambda: tasks.echo.delay("x" * MAX_ARGUMENT_BYTES),
        pgq.SerializationError,
        "echo: the arguments take 1,048,582 bytes as JSON, over the limit of 1,048,576 "
        "(App(max_argument_bytes=...)); pass a reference to large data instead of the data",
    ),
    "oversized bulk item": (
        lambda: tasks.echo.delay_many([(1,), ("x" * MAX_ARGUMENT_BYTES,)]),
        pgq.SerializationError,
        "echo: the arguments take 1,048,582 bytes as JSON",
    ),
    "unknown task": (
        lambda: tasks.app.get_task("nope"),
        pgq.UnknownTask,
        "unknown task 'nope' (registered: add, async_add,",
    ),
    "invalid queue name": (
        lambda: tasks.add.using(queue="a b").delay(1, 2),
        pgq.InvalidOptions,
        "invalid queue name 'a b': use 1-100 letters, digits, '_', '.', ':' or '-', "
        "starting with a letter or digit",
    ),
    "negative delay": (
        lambda: tasks.add.using(run_after=-5).delay(1, 2),
        pgq.InvalidOptions,
        "run_after must not be negative, got -5 seconds",
    ),
    "negative timedelta": (
        lambda: tasks.add.using(run_after=timedelta(minutes=-1)).delay(1, 2),
        pgq.InvalidOptions,
        "run_after must not be negative, got -60 seconds",
    ),
    "infinite delay": (
        lambda: tasks.add.using(run_after=math.inf).delay(1, 2),
        pgq.InvalidOptions,
        "run_after must be at most 365,000 days, got inf seconds",
    ),
    "NaN delay": (
        lambda: tasks.add.using(run_after=math.nan).delay(1, 2),
        pgq.InvalidOptions,
        "run_after must be a number of seconds, got nan",
    ),
    "naive datetime": (
        lambda: tasks.add.using(run_after=NAIVE).delay(1, 2),
        pgq.InvalidOptions,
        "run_after datetime 2030-01-01T12:00:00 has no timezone; "
        "use an aware datetime such as datetime.now(timezone.utc)",
    ),
    "datetime out of range": (
        lambda: tasks.add.using(
            run_after=datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
        ).delay(1, 2),
        pgq.InvalidOptions,
        "run_after datetime 9999-12-31T23:59:59.999999-05:00 is out of range in UTC",
    ),
    "priority out of range": (
        lambda: tasks.add.using(priority=40000).delay(1, 2),
        pgq.InvalidOptions,
        "priority 40000 is out of range [-32768, 32767]",
    ),
    "priority not an integer": (
        lambda: tasks.add.using(priority="high").delay(1, 2),
        pgq.InvalidOptions,
        "priority must be an integer, got 'high'",
    ),
    "max_attempts below 1": (
        lambda: tasks.add.using(max_attempts=0).delay(1, 2),
        pgq.InvalidOptions,
        "max_attempts must be an integer >= 1, got 0",
    ),
    "max_attempts past the column": (
        lambda: tasks.add.using(max_attempts=2**31).delay(1, 2),
        pgq.InvalidOptions,
        "max_attempts 2147483648 is out of range [1, 2147483647]",
    ),
    "unique key too long": (
        lambda: tasks.add.using(unique_key="é" * 600).delay(1, 2),
        pgq.InvalidOptions,
        "unique_key takes 1,200 bytes in UTF-8, over the limit of 1,000; "
        "hash a long key (hashlib.sha256) and pass the digest",
    ),
    "NUL in a unique key": (
        lambda: tasks.add.using(unique_key="k\x00").delay(1, 2),
        pgq.InvalidOptions,
        "invalid unique_key 'k\\x00': contains a NUL character",
    ),
    "NUL in a task name": (
        lambda: tasks.app.task(name="t\x00")(tasks.add.func),
        pgq.InvalidOptions,
        "invalid task name 't\\x00': contains a NUL character",
    ),
    "task name too long": (
        lambda: tasks.app.task(name="t" * 201)(tasks.add.func),
        pgq.InvalidOptions,
        "invalid task name 'tttt",
    ),
    "list filter no queue can have": (
        lambda: tasks.app.list_jobs(queue="'; DROP TABLE pgq.jobs; --"),
        pgq.InvalidOptions,
        'invalid queue name "\'; DROP TABLE pgq.jobs; --"',
    ),
    "not a psycopg connection": (
        lambda: tasks.add.using(connection="postgresql://elsewhere").delay(1, 2),
        pgq.InvalidOptions,
        "connection must be a psycopg Connection, got str",
    ),
}


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("case", list(API))
def test_api__bad_input_gets_its_error_and_changes_nothing(unchanged: Conn, case: str) -> None:
    call, error, prefix = API[case]

    with pytest.raises(error) as caught:
        call()

    assert_one_line(str(caught.value), prefix)


def test_api__async_calls_refuse_the_same_way(unchanged: Conn) -> None:
    async def scenario() -> None:
        try:
            with pytest.raises(pgq.SerializationError, match="over the limit"):
                await tasks.echo.adelay("x" * MAX_ARGUMENT_BYTES)
            with pytest.raises(pgq.InvalidOptions, match="no timezone"):
                await tasks.add.using(run_after=NAIVE).adelay(1, 2)
        finally:
            await tasks.app.aclose()

    asyncio.run(scenario())


def test_argument_limit__is_configurable_and_can_be_lifted(unchanged: Conn) -> None:
    small = pgq.App(tasks.app.dsn, max_argument_bytes=100)
    unlimited = pgq.App(tasks.app.dsn, max_argument_bytes=None)
    echo_small = small.task(name="echo")(tasks.echo.func)
    try:
        with pytest.raises(pgq.SerializationError) as caught:
            echo_small.delay("x" * 50, other="y" * 40)  # 54 + 52 bytes of JSON
        assert_one_line(str(caught.value), "echo: the arguments take 106 bytes as JSON")
        assert "over the limit of 100" in str(caught.value)
        assert unlimited.max_argument_bytes is None
    finally:
        small.close()
    with pytest.raises(pgq.InvalidOptions, match="max_argument_bytes must be a positive"):
        pgq.App(max_argument_bytes=0)


def test_argument_limit__a_call_at_the_limit_is_accepted(dsn: str, conn: Conn) -> None:
    app = pgq.App(dsn, max_argument_bytes=100)
    echo = app.task(name="echo")(tasks.echo.func)
    try:
        job = echo.delay("x" * 94)  # ["xxx…"] is 98 bytes, {} 2 more
    finally:
        app.close()
    assert conn.execute("SELECT args->>0 FROM pgq.jobs WHERE id = %s", (job.id,)).fetchone() == (
        "x" * 94,
    )


# The command line.

CliCase = tuple[list[str], int, str]
CLI: dict[str, CliCase] = {
    "invalid JSON": (
        ["enqueue", "add", "{bad", "--app", "tests.tasks:app"],
        2,
        "Error: Invalid value for ARGUMENTS: not valid JSON: Expecting property name",
    ),
    "JSON neither object nor array": (
        ["enqueue", "add", '"text"', "--app", "tests.tasks:app"],
        2,
        "Error: Invalid value for ARGUMENTS: must be a JSON object or array",
    ),
    "JSON number past int's limit": (
        ["enqueue", "echo", "[" + "9" * 5000 + "]", "--app", "tests.tasks:app"],
        2,
        "Error: Invalid value for ARGUMENTS: not valid JSON: Exceeds the limit",
    ),
    "JSON nested too deeply": (
        ["enqueue", "echo", "[" * 100_000 + "]" * 100_000, "--app", "tests.tasks:app"],
        2,
        "Error: Invalid value for ARGUMENTS: not valid JSON: maximum recursion depth exceeded",
    ),
    "JSON NaN": (
        ["enqueue", "echo", "[NaN]", "--app", "tests.tasks:app"],
        1,
        "pgq: error: echo: positional argument 0 is not JSON-serializable (float)",
    ),
    "oversized arguments": (
        ["enqueue", "echo", '["' + "x" * MAX_ARGUMENT_BYTES + '"]', "--app", "tests.tasks:app"],
        1,
        "pgq: error: echo: the arguments take 1,048,582 bytes as JSON, over the limit",
    ),
    "unknown task (--app)": (
        ["enqueue", "nope", "{}", "--app", "tests.tasks:app"],
        1,
        "pgq: error: unknown task 'nope' (registered: add,",
    ),
    "unknown task (no live worker)": (
        ["enqueue", "nope", "{}"],
        1,
        "pgq: error: unknown task 'nope': no live worker has registered it (pass --app to "
        "check against your App instead)",
    ),
    "invalid queue name": (
        ["enqueue", "seed", "[]", "--queue", "a;b"],
        1,
        "pgq: error: invalid queue name 'a;b'",
    ),
    "negative delay": (
        ["enqueue", "seed", "[]", "--delay", "-1"],
        2,
        "Error: Invalid value for '--delay': -1.0 is not in the range x>=0.",
    ),
    "infinite delay": (
        ["enqueue", "seed", "[]", "--delay", "inf"],
        1,
        "pgq: error: run_after must be at most 365,000 days, got inf seconds",
    ),
    "priority out of range": (
        ["enqueue", "seed", "[]", "--priority", "99999"],
        1,
        "pgq: error: priority 99999 is out of range [-32768, 32767]",
    ),
    "priority not an integer": (
        ["enqueue", "seed", "[]", "--priority", "high"],
        2,
        "Error: Invalid value for '--priority': 'high' is not a valid integer.",
    ),
    "unique key too long": (
        ["enqueue", "seed", "[]", "--unique-key", "k" * 1001],
        1,
        "pgq: error: unique_key takes 1,001 bytes in UTF-8, over the limit of 1,000",
    ),
    "undecodable bytes in a unique key": (
        ["enqueue", "seed", "[]", "--unique-key", "k\udcff"],  # Python's view of argv byte 0xff
        1,
        "pgq: error: invalid unique_key 'k\\udcff': contains a lone surrogate, which is not "
        "valid Unicode",
    ),
    "jobs filter no queue can have": (
        ["jobs", "--queue", "x' OR '1'='1"],
        1,
        "pgq: error: invalid queue name \"x' OR '1'='1\"",
    ),
    "job id not an integer": (["retry", "1", "x"], 2, "Error: Invalid value: job ids are integers"),
    "job id not positive": (["cancel", "0"], 2, "Error: Invalid value: job ids are positive"),
    "unknown status": (["jobs", "--status", "lost"], 2, "Error: Invalid value for '--status'"),
    "unknown verb": (["frobnicate"], 2, "Error: No such command 'frobnicate'."),
    "grant without a kind": (["grant", "someone"], 2, "Error: pass --worker or --producer"),
    "grant to a missing role": (
        ["grant", "no_such_role_here", "--worker"],
        1,
        "pgq: error: role 'no_such_role_here' does not exist: create it first",
    ),
    "grant to PUBLIC": (
        ["grant", "public", "--producer"],
        1,
        "pgq: error: refusing to grant pgq's privileges to PUBLIC, that is to every role",
    ),
}


@pytest.mark.parametrize("case", list(CLI))
def test_cli__bad_input_gets_its_error_and_changes_nothing(
    unchanged: Conn, catalogue_dsn: str, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    args, expected_code, prefix = CLI[case]

    code, out, err = run_cli(capsys, "--dsn", catalogue_dsn, *args)

    assert (code, out) == (expected_code, "")
    assert_cli_error(err, code, prefix)


# Where the database is, and what it holds.


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database__unreachable_or_wrong_dsn(
    server_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = make_conninfo(server_dsn, host="127.0.0.1", port=str(closed_port()))
    missing_db = make_conninfo(server_dsn, dbname="pgq_no_such_database")
    cases = [
        ("postgresql://[", pgq.ConfigurationError, "invalid DSN: "),
        (unreachable, pgq.DatabaseUnavailable, "cannot connect to postgresql://"),
        (missing_db, pgq.DatabaseUnavailable, "cannot connect to postgresql://"),
    ]
    for dsn, error, prefix in cases:
        app = pgq.App(dsn, connect_timeout=1)
        try:
            with pytest.raises(error) as caught:
                app.task(name="t")(tasks.add.func).delay(1, 2)
        finally:
            app.close()
        assert_one_line(str(caught.value), prefix)

        code, out, err = run_cli(capsys, "--dsn", dsn, "enqueue", "t", "[1, 2]")
        assert (code, out) == (1, "")
        assert_cli_error(err, 1, f"pgq: error: {prefix}")
    assert 'database "pgq_no_such_database" does not exist' in err


def test_database__without_the_schema_says_run_pgq_migrate(
    empty_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = pgq.App(empty_dsn)
    task = app.task(name="t")(tasks.add.func)
    try:
        for call in (lambda: task.delay(1, 2), lambda: task.delay_many([(1, 2)])):
            with pytest.raises(pgq.SchemaNotMigrated) as caught:
                call()
            assert str(caught.value) == (
                "The pgq schema is missing or out of date in this database: run `pgq migrate`."
            )
    finally:
        app.close()
    code, _, err = run_cli(capsys, "--dsn", empty_dsn, "enqueue", "t", "[]")
    assert code == 1
    assert_cli_error(err, 1, "pgq: error: The pgq schema is missing")

    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('pgq') IS NULL").fetchone() == (True,)


OURS = len(all_migrations())
NEWER_MIGRATION = f"{OURS + 1:04d}_from_a_newer_pgq"
NEWER = (
    f"the database schema is at version {OURS + 1}, newer than this pgq ({OURS}): upgrade pgq "
    f"(unknown migration(s): {NEWER_MIGRATION})"
)


@pytest.fixture
def newer_schema(dsn: str, conn: Conn) -> Iterator[Conn]:
    """The database as a newer pgq left it: one migration this code does not know."""
    conn.execute("INSERT INTO pgq.migrations (name) VALUES (%s)", (NEWER_MIGRATION,))
    tasks.app.configure(dsn=dsn)
    before = snapshot(conn)
    try:
        yield conn
    finally:
        tasks.app.close()
        tasks.app.configure(dsn=None)
    assert snapshot(conn) == before


def test_newer_schema__enqueue_and_reads_refuse(newer_schema: Conn) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: tasks.add.delay(1, 2),
        lambda: tasks.add.delay_many([(1, 2)]),
        lambda: tasks.app.get_job(1),
        lambda: tasks.app.cancel(1),
    ]
    for call in calls:
        with pytest.raises(pgq.SchemaTooNew) as caught:
            call()
        assert str(caught.value) == NEWER


def test_newer_schema__every_cli_verb_refuses(
    newer_schema: Conn, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    verbs = [
        ["enqueue", "add", "[1, 2]", "--app", "tests.tasks:app"],
        ["status"],
        ["jobs"],
        ["retry", "1"],
        ["cancel", "1"],
        ["migrate"],
        ["grant", "postgres", "--producer"],
    ]
    for verb in verbs:
        code, out, err = run_cli(capsys, "--dsn", dsn, *verb)
        assert (code, out) == (1, ""), verb
        assert_cli_error(err, 1, f"pgq: error: {NEWER}")


def test_newer_schema__a_worker_process_refuses_to_start(newer_schema: Conn, dsn: str) -> None:
    done = subprocess.run(
        pgq_command(dsn, "worker", "--app", "tests.tasks:app", "--burst"),
        cwd=ROOT,
        env=subprocess_env(dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert_cli_error(done.stderr, 1, f"pgq: error: {NEWER}")


# Permission denied.


@pytest.fixture
def no_privileges(server_dsn: str, dsn: str) -> Iterator[tuple[str, str]]:
    """A role that may log in and do nothing else: (name, DSN)."""
    with login_role(server_dsn, dsn) as role:
        yield role


def denied(role: str, statement: str, relation: str) -> str:
    return (
        f"permission denied for {relation} (statement {statement} as role {role!r}): "
        f"`pgq grant {role} --worker` (or --producer), run as the owner of schema pgq, "
        "grants what pgq needs"
    )


def test_permission_denied__names_the_object_the_role_and_the_fix(
    no_privileges: tuple[str, str], conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    role, role_dsn = no_privileges
    before = snapshot(conn)
    app = pgq.App(role_dsn)
    try:
        with pytest.raises(pgq.PermissionDenied) as caught:
            app.task(name="t")(tasks.add.func).delay(1, 2)
    finally:
        app.close()
    assert str(caught.value) == denied(role, "schema_exists", "schema pgq")

    code, out, err = run_cli(capsys, "--dsn", role_dsn, "status")
    assert (code, out) == (1, "")
    assert_cli_error(err, 1, f"pgq: error: {denied(role, 'schema_exists', 'schema pgq')}")

    code, out, err = run_cli(capsys, "--dsn", role_dsn, "grant", role, "--worker")
    assert (code, out) == (1, "")
    assert_cli_error(
        err,
        1,
        "pgq: error: permission denied for schema pgq: `pgq grant` runs as the owner of "
        "schema pgq (the role that ran `pgq migrate`)",
    )
    assert snapshot(conn) == before


def test_permission_denied__a_producer_may_not_cancel_or_retry(
    no_privileges: tuple[str, str], dsn: str, conn: Conn, capsys: pytest.CaptureFixture[str]
) -> None:
    role, role_dsn = no_privileges
    assert run_cli(capsys, "--dsn", dsn, "grant", role, "--producer")[0] == 0
    app = pgq.App(role_dsn)
    try:
        job = app.task(name="t")(tasks.add.func).delay(1, 2)
        before = snapshot(conn)
        with pytest.raises(pgq.PermissionDenied) as caught:
            app.cancel(job.id)
        assert str(caught.value) == denied(role, "cancel_jobs", "table jobs")
        with pytest.raises(pgq.PermissionDenied, match="statement retry_jobs"):
            app.retry(job.id)
    finally:
        app.close()

    code, out, err = run_cli(capsys, "--dsn", role_dsn, "cancel", str(job.id))
    assert (code, out) == (1, "")
    assert_cli_error(err, 1, f"pgq: error: {denied(role, 'cancel_jobs', 'table jobs')}")
    assert snapshot(conn) == before
