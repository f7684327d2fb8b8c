"""Properties of the enqueue API and of ``pgq enqueue``, over generated input.

Hypothesis runs many examples in one test, so these tests share one database
for the module (function-scoped fixtures would be reused across examples
anyway) and compare row counts within each example instead of starting empty.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

import pgq
from pgq import store
from pgq.cli import main
from pgq.validation import QUEUE_NAME
from tests import tasks
from tests.conftest import create_database, dsn_with_dbname

Conn = psycopg.Connection[Any]
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=[HealthCheck.too_slow],
)
INJECTIONS = [
    "'; DROP TABLE pgq.jobs; --",
    "$1",
    "%s",
    "%(x)s",
    "{}",
    "{0}",
    '"',
    "'",
    "\\",
    "\\'",
    "\x00",
    "a\x00b",
]


@pytest.fixture(scope="module")
def property_dsn(server_dsn: str, template_db: str) -> Iterator[str]:
    name = create_database(server_dsn, template_db)
    yield dsn_with_dbname(server_dsn, name)
    with psycopg.connect(server_dsn, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="module")
def conn(property_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(property_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def app(property_dsn: str) -> Iterator[pgq.App]:
    """tests.tasks.app on the module's database, with a live worker that knows
    ``echo`` (so that ``pgq enqueue echo`` without --app is accepted)."""
    tasks.app.configure(dsn=property_dsn)
    tasks.app.execute(store.register_worker(uuid.uuid4(), "host", 1, None, ["echo"], 1, 3600))
    yield tasks.app
    tasks.app.close()
    tasks.app.configure(dsn=None)


def count_jobs(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    assert row is not None
    return int(row[0])


# JSON values. Strings exclude NUL, which PostgreSQL cannot store (refused below).

json_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | json_text
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_text, children, max_size=4)
    ),
    max_leaves=12,
)
json_kwargs = st.dictionaries(json_text, json_values, max_size=4)


def same_json(stored: Any, given: Any) -> bool:
    """Equal as JSON through PostgreSQL's jsonb, which keeps numbers as decimals:
    a float without fractional digits (1e16) comes back as the int it equals."""
    if isinstance(given, float):
        return (
            not isinstance(stored, bool)
            and isinstance(stored, (int, float))
            and float(stored) == given
        )
    if isinstance(given, bool) or given is None or isinstance(given, (int, str)):
        return type(stored) is type(given) and stored == given
    if isinstance(given, list):
        return (
            isinstance(stored, list)
            and len(stored) == len(given)
            and all(same_json(s, g) for s, g in zip(stored, given, strict=True))
        )
    assert isinstance(given, dict)
    return (
        isinstance(stored, dict)
        and stored.keys() == given.keys()
        and all(same_json(stored[key], value) for key, value in given.items())
    )


@PROPERTY
@given(args=st.lists(json_values, max_size=4), kwargs=json_kwargs)
def test_json_arguments__round_trip_through_delay_and_get_job(
    app: pgq.App, conn: Conn, args: list[Any], kwargs: dict[str, Any]
) -> None:
    job = tasks.echo.delay(*args, **kwargs)

    for read in (job, app.get_job(job.id)):
        assert same_json(read.args, args), (read.args, args)
        assert same_json(read.kwargs, kwargs), (read.kwargs, kwargs)
    row = conn.execute("SELECT args, kwargs FROM pgq.jobs WHERE id = %s", (job.id,)).fetchone()
    assert row is not None
    assert same_json(row[0], args) and same_json(row[1], kwargs)


def test_json_numbers__exact_where_a_float_can_be() -> None:
    """What same_json allows, pinned down: integers and floats with a fraction
    come back exactly; only whole floats of 1e16 or more come back as ints."""
    assert same_json(10**16, 1e16)
    assert not same_json(1.5, 1)
    assert not same_json(True, 1)


@pytest.mark.parametrize("value", [0.1, -0.0, 1.5e-300, 2**53 + 1, -(10**30), 1e16, 1e23, 1.0])
def test_json_numbers__examples(app: pgq.App, value: float) -> None:
    job = app.get_job(tasks.echo.delay(value).id)

    assert same_json(job.args[0], value)
    if isinstance(value, int) or value != int(value) or abs(value) < 1e16:
        assert job.args == [value]  # not even the type changes


# Non-JSON values: refused at delay(), nothing written.

not_json = st.one_of(
    st.builds(object),
    st.sets(st.integers(), max_size=2),
    st.binary(max_size=3),
    st.complex_numbers(allow_nan=False),
    st.datetimes(timezones=st.just(timezone.utc)),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.text(min_size=1).map(lambda text: text[: len(text) // 2] + "\x00" + text[len(text) // 2 :]),
    st.text(st.characters(categories=["Cs"]), min_size=1),
)


@st.composite
def with_one_bad_value(draw: st.DrawFn) -> tuple[list[Any], dict[str, Any], str]:
    """JSON arguments with one non-JSON value hidden somewhere; (args, kwargs, label)."""
    args = draw(st.lists(json_values, max_size=3))
    kwargs = draw(json_kwargs)
    bad = draw(not_json)
    nest = draw(st.sampled_from(["plain", "list", "dict"]))
    hidden: Any = bad if nest == "plain" else [1, bad] if nest == "list" else {"inner": bad}
    if draw(st.booleans()):
        position = draw(st.integers(0, len(args)))
        args.insert(position, hidden)
        return args, kwargs, f"positional argument {position}"
    name = draw(json_text.filter(lambda key: key not in kwargs))
    kwargs[name] = hidden
    return args, kwargs, f"argument {name!r}"


@PROPERTY
@given(case=with_one_bad_value())
def test_non_json_arguments__are_refused_by_name_and_write_nothing(
    app: pgq.App, conn: Conn, case: tuple[list[Any], dict[str, Any], str]
) -> None:
    args, kwargs, label = case
    before = count_jobs(conn)

    with pytest.raises(pgq.SerializationError) as caught:
        tasks.echo.delay(*args, **kwargs)
    with pytest.raises(pgq.SerializationError):
        tasks.echo.delay_many([args, kwargs, (1,)])

    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"echo: {label} is not JSON-serializable")
    assert count_jobs(conn) == before


def test_non_json__decimal_and_datetime_are_named(app: pgq.App, conn: Conn) -> None:
    before = count_jobs(conn)
    for value, kind in [(Decimal("1.5"), "Decimal"), (datetime.now(timezone.utc), "datetime")]:
        with pytest.raises(pgq.SerializationError, match=f"argument 'when' .*{kind}"):
            tasks.echo.delay(when=value)
    assert count_jobs(conn) == before


# Names and keys: stored verbatim or refused as InvalidOptions, never a
# database error, never a partial write.

any_text = st.one_of(
    st.text(),
    st.text(st.characters(codec="ascii"), max_size=8),
    st.text(st.characters(categories=["Cs", "Lu", "Nd", "Po"]), max_size=8),
    st.text(min_size=190, max_size=300),
    st.sampled_from(INJECTIONS),
)


def stored_column(conn: Conn, job_id: int, column: str) -> Any:
    query = sql.SQL("SELECT {} FROM pgq.jobs WHERE id = %s").format(sql.Identifier(column))
    row = conn.execute(query, (job_id,)).fetchone()
    assert row is not None
    return row[0]


@PROPERTY
@given(queue=any_text | st.from_regex(QUEUE_NAME, fullmatch=True))
def test_queue_names__stored_verbatim_or_refused(app: pgq.App, conn: Conn, queue: str) -> None:
    before = count_jobs(conn)
    try:
        job = tasks.echo.using(queue=queue).delay(queue=queue)
    except pgq.InvalidOptions as exc:
        event("refused")
        assert str(exc).startswith("invalid queue name")
        assert not QUEUE_NAME.fullmatch(queue)
        assert count_jobs(conn) == before
        return
    assert QUEUE_NAME.fullmatch(queue)
    assert stored_column(conn, job.id, "queue") == job.queue == queue
    assert count_jobs(conn) == before + 1


@PROPERTY
@given(key=any_text)
def test_unique_keys__stored_verbatim_or_refused(app: pgq.App, conn: Conn, key: str) -> None:
    before = count_jobs(conn)
    try:
        job = tasks.echo.using(unique_key=key).delay("k")
    except pgq.InvalidOptions as exc:
        event("refused")
        assert str(exc).startswith(("invalid unique_key", "unique_key "))
        assert count_jobs(conn) == before
        return
    assert stored_column(conn, job.id, "unique_key") == job.unique_key == key
    assert count_jobs(conn) in (before, before + 1)  # a live job with the key already exists
    assert app.get_job(job.id).unique_key == key


@PROPERTY
@given(name=any_text)
def test_task_names__stored_verbatim_or_refused(app: pgq.App, conn: Conn, name: str) -> None:
    before = count_jobs(conn)
    try:
        task = pgq.Task(func=tasks.echo.func, app=app, name=name)
        job = task.delay(name)
    except pgq.InvalidOptions as exc:
        event("refused")
        assert str(exc).startswith("invalid task name")
        assert count_jobs(conn) == before
        return
    assert stored_column(conn, job.id, "task") == job.task == name
    assert [j.id for j in app.list_jobs(task=name, limit=1000)].count(job.id) == 1
    assert count_jobs(conn) == before + 1


def test_keyword_arguments__named_self_are_arguments_like_any_other(app: pgq.App) -> None:
    job = tasks.echo.delay(self="s", args="a", kwargs="k")

    assert job.kwargs == {"self": "s", "args": "a", "kwargs": "k"}


# pgq enqueue: any text gets exit 0, 1 or 2, one line for 1, never a traceback.


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


cli_text = st.one_of(st.text(max_size=30), st.sampled_from(INJECTIONS))
json_arguments = st.one_of(
    st.lists(json_values, max_size=3).map(json.dumps), json_kwargs.map(json.dumps)
)


@st.composite
def enqueue_command(draw: st.DrawFn) -> list[str]:
    """``enqueue TASK ARGUMENTS [options]``: each part well formed, or, in wild
    examples, any text at all half of the time."""
    wild = draw(st.booleans())

    def pick(tame: st.SearchStrategy[str], anything: st.SearchStrategy[str]) -> str:
        return draw(anything if wild and draw(st.booleans()) else tame)

    command = [
        "enqueue",
        pick(st.sampled_from(["echo", "add"]), cli_text),
        pick(json_arguments, cli_text | json_values.map(json.dumps)),
    ]
    if draw(st.booleans()):
        command += ["--app", "tests.tasks:app"]
    options = {
        "--queue": (st.sampled_from(["default", "other.q", "a:b-c"]), cli_text),
        "--priority": (st.integers(-40000, 40000).map(str), cli_text),
        "--delay": (st.floats(min_value=0, max_value=1e6).map(str), st.floats().map(str)),
        "--unique-key": (st.text(max_size=20), cli_text),
    }
    for option, (tame, anything) in options.items():
        if draw(st.booleans()):
            command += [option, pick(tame, anything)]
    return command


@PROPERTY
@given(command=enqueue_command())
def test_cli_enqueue__any_input_exits_0_1_or_2_with_one_clear_line(
    app: pgq.App, conn: Conn, property_dsn: str, command: list[str]
) -> None:
    before = count_jobs(conn)

    code, out, err = run_cli("--dsn", property_dsn, *command)

    event(f"exit {code}")
    assert code in (0, 1, 2), (code, err)
    assert "Traceback" not in err
    if code == 0:  # enqueued, or a TASK of "--help" asked for the help
        assert out.startswith(("enqueued job ", "Usage: ")) and err == "", (out, err)
        assert count_jobs(conn) in (before, before + 1)  # + 0: a live job held the unique key
        return
    lines = err.strip().splitlines()
    if code == 1:
        assert len(lines) == 1 and lines[0].startswith("pgq: error: "), err
    else:
        assert lines[-1].startswith("Error: "), err
    assert out == ""
    assert count_jobs(conn) == before
