"""manage.py pgq_worker / pgq_status / pgq_jobs / pgq_retry / pgq_cancel /
pgq_enqueue / pgq_migrate: options, output and one-line errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from io import StringIO

import psycopg
import pytest
from django.core.management import CommandError, call_command, load_command_class
from django.db import connection
from psycopg.conninfo import make_conninfo

import pgq
from pgq import db, store
from pgq.retry import Outcome
from pgq_django.discovery import discover_tasks
from pgq_django.models import Job
from tests.conftest import wait_until
from tests.django.conftest import ROOT, manage, manage_env
from tests.django.testapp import tasks
from tests.django.testapp.models import Note


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def fail_job(app: pgq.App, job: pgq.Job) -> None:
    worker_id = uuid.uuid4()
    app.execute(store.register_worker(worker_id, "test", 1, None, [job.task], 1, 60))
    app.execute(store.claim_jobs(worker_id, None, [job.task], 100))
    outcome = Outcome(job.id, worker_id, 1, pgq.JobStatus.FAILED, error="ValueError: no")
    app.execute(store.finish_jobs([outcome]))


def help_text(name: str) -> str:
    return load_command_class("pgq_django", name).create_parser("manage.py", name).format_help()


def test_worker_help__lists_the_clis_worker_options_with_project_defaults() -> None:
    text = " ".join(help_text("pgq_worker").split())
    for option in ("--queues", "--concurrency", "--processes", "--burst", "--poll-interval"):
        assert option in text
    for option in ("--heartbeat-interval", "--lease", "--shutdown-grace", "--reload"):
        assert option in text
    assert "Run a worker for this project's tasks" in text
    assert "Seconds between polls when no NOTIFY arrives. Default: 1.0." in text  # PGQ["WORKER"]
    assert "Jobs run at once per process. Default: 10." in text
    assert "--app" not in text


def test_verb_help__comes_from_the_cli() -> None:
    assert "Put failed or cancelled jobs back in the queue." in help_text("pgq_retry")
    assert "JOB_IDS [JOB_IDS ...]" in help_text("pgq_cancel")
    enqueue = " ".join(help_text("pgq_enqueue").split())
    assert "--priority PRIORITY" in enqueue and "--unique-key" in enqueue
    assert "--app" not in enqueue
    assert "{queued,running,succeeded,failed,cancelled}" in help_text("pgq_jobs")


@pytest.mark.django_db
def test_status__counts_per_queue_and_status() -> None:
    tasks.add.delay(1, 2)
    tasks.send_email.delay("a@example.com")
    text = run("pgq_status")
    assert text.splitlines()[0].split()[:4] == ["queue", "queued", "scheduled", "running"]
    assert any(line.split()[:2] == ["emails", "1"] for line in text.splitlines())
    assert "live workers: 0" in text
    parsed = json.loads(run("pgq_status", "--json"))
    assert {row["queue"] for row in parsed["queues"]} == {"default", "emails"}


def test_status_help__watch_takes_an_optional_interval() -> None:
    parser = load_command_class("pgq_django", "pgq_status").create_parser("manage.py", "pgq_status")
    assert parser.parse_args([]).watch is None
    assert parser.parse_args(["--watch"]).watch == 2.0
    assert parser.parse_args(["--watch", "0.5"]).watch == 0.5
    assert "--watch [SECONDS]" in " ".join(help_text("pgq_status").split())


@pytest.mark.slow
def test_manage_py_status_watch__redraws_until_ctrl_c(committed_db: None, app: pgq.App) -> None:
    tasks.send_email.delay("a@example.com")
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "pgq_status", "--watch", "0.1"],
        cwd=ROOT,
        env=manage_env(app.dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    try:
        seen = [process.stdout.readline() for _ in range(12)]  # more than one frame
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = "".join(seen) + rest
    assert process.returncode == 0, text
    assert text.count("pgq status at ") >= 2, text
    assert any(line.split()[:2] == ["emails", "1"] for line in text.splitlines())


@pytest.mark.django_db
def test_jobs__lists_and_filters() -> None:
    job = tasks.add.delay(1, 2)
    assert f"{job.id}" in run("pgq_jobs")
    assert run("pgq_jobs", "--status", "failed") == "no jobs\n"
    [listed] = json.loads(run("pgq_jobs", "--json", "--queue", "default"))
    assert (listed["id"], listed["task"]) == (job.id, "tests.django.testapp.tasks.add")


@pytest.mark.django_db
def test_retry__queues_failed_jobs_again(app: pgq.App) -> None:
    job = tasks.fail.delay("no")
    fail_job(app, job)
    assert run("pgq_retry", str(job.id)) == f"queued again: {job.id}\n"
    assert job.refresh().status is pgq.JobStatus.QUEUED


@pytest.mark.django_db
def test_retry__of_a_job_that_cannot_be_retried_is_a_one_line_error() -> None:
    job = tasks.add.delay(1, 2)
    with pytest.raises(CommandError) as raised:
        run("pgq_retry", str(job.id), "999999")
    assert str(raised.value) == (
        f"not retried (no such job, or not failed/cancelled): {job.id} 999999"
    )
    assert raised.value.returncode == 1


@pytest.mark.django_db
def test_retry_and_cancel__bad_ids_are_usage_errors() -> None:
    for name in ("pgq_retry", "pgq_cancel"):
        with pytest.raises(CommandError) as raised:
            run(name, "abc")
        assert "job ids are integers, got abc" in str(raised.value)
        assert raised.value.returncode == 2
    with pytest.raises(CommandError, match="the following arguments are required: JOB_IDS"):
        run("pgq_cancel")


@pytest.mark.django_db
def test_cancel__cancels_queued_jobs() -> None:
    job = tasks.add.delay(1, 2)
    assert run("pgq_cancel", str(job.id)) == f"cancelled: {job.id}\n"
    assert Job.objects.get(pk=job.id).status == "cancelled"
    with pytest.raises(CommandError, match=r"not cancelled \(no such job, or already finished\)"):
        run("pgq_cancel", str(job.id))


@pytest.mark.django_db
def test_enqueue__queues_a_project_task_by_name() -> None:
    text = run("pgq_enqueue", "tests.django.testapp.tasks.add", "[1, 2]", "--priority", "3")
    job = Job.objects.get()
    assert text == (
        f"enqueued job {job.id} task=tests.django.testapp.tasks.add queue=default status=queued\n"
    )
    assert (job.args, job.priority) == ([1, 2], 3)
    run("pgq_enqueue", "tests.django.testapp.tasks.send_email", '{"address": "x@y.z"}')
    assert Job.objects.filter(queue="emails", kwargs={"address": "x@y.z"}).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message", "returncode"),
    [
        (("nope",), "unknown task 'nope' (registered: ", 1),
        (("tests.django.testapp.tasks.add", "{oops"), "Invalid value for ARGUMENTS", 2),
        # argparse errors: exit status 2 from the shell, CommandError in call_command.
        (("tests.django.testapp.tasks.add", "[1]", "--priority", "x"), "not a valid integer", 1),
        (("tests.django.testapp.tasks.add", "[1]", "--queue", "a b"), "invalid queue name", 1),
    ],
)
def test_enqueue__errors_are_one_line_and_write_nothing(
    args: tuple[str, ...], message: str, returncode: int
) -> None:
    with pytest.raises(CommandError) as raised:
        run("pgq_enqueue", *args)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value).strip()
    assert raised.value.returncode == returncode
    assert Job.objects.count() == 0


@pytest.mark.django_db
def test_migrate__finds_the_schema_up_to_date() -> None:
    assert run("pgq_migrate") == "schema is up to date\n"


def test_discovery__imports_every_apps_tasks_module() -> None:
    names = discover_tasks()
    assert "discovered.shout" in names
    assert "tests.django.discovered.tasks" in sys.modules
    assert "tests.django.testapp.tasks.dj_add" in names  # Django tasks found there too


def test_worker_command__runs_jobs_until_none_is_ready(committed_db: None) -> None:
    job = tasks.create_note.delay("made by pgq_worker")
    call_command("pgq_worker", "--burst", "--concurrency", "2", verbosity=0)
    assert job.refresh().status is pgq.JobStatus.SUCCEEDED
    assert Note.objects.get().text == "made by pgq_worker"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--concurrency", "0"), "argument --concurrency/-c: 0 is not in the range x>=1."),
        (("--lease", "soon"), "argument --lease: 'soon' is not a valid float"),
        (("--reload", "--burst"), "--reload runs one worker process until stopped"),
        (("--queues", "a b"), "invalid queue name 'a b'"),
    ],
)
def test_worker_command__bad_options_are_one_line_errors(
    committed_db: None, args: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CommandError) as raised:
        call_command("pgq_worker", *args, verbosity=0)
    assert message in str(raised.value)


@pytest.mark.django_db
def test_worker_command__unmigrated_schema_is_a_one_line_error() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA pgq CASCADE")  # undone with the test's transaction
    with pytest.raises(CommandError) as raised:
        call_command("pgq_worker", "--burst", verbosity=0)
    assert str(raised.value).startswith("The pgq schema is missing or out of date")
    assert str(raised.value).endswith("(in a Django project: manage.py migrate)")


@pytest.mark.slow
def test_manage_py_worker__discovers_tasks_and_exits_0_on_burst(
    committed_db: None, app: pgq.App
) -> None:
    # This test process never imported the task's module: only discovery can find it.
    job = pgq.Task(func=print, app=app, name="discovered.shout").delay("quiet")
    done = manage(app.dsn, "pgq_worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert job.refresh().result == "QUIET"
    assert "discovered.shout" in done.stderr  # the worker logs the tasks it found


@pytest.mark.slow
def test_manage_py_worker__sigterm_stops_it_with_status_0(committed_db: None, app: pgq.App) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "pgq_worker", "--concurrency", "2"],
        cwd=ROOT,
        env=manage_env(app.dsn),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: pgq_worker_rows(app) == 1, timeout=60)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert pgq_worker_rows(app) == 0  # deregistered on the way out


def pgq_worker_rows(app: pgq.App) -> int:
    """Workers registered, read on a connection of its own (the worker commits on its own)."""
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        return len(db.run(conn, store.list_workers()))


@pytest.mark.slow
def test_manage_py_errors__one_line_on_stderr_with_exit_status(
    committed_db: None, app: pgq.App
) -> None:
    done = manage(app.dsn, "pgq_retry", "999999")
    assert done.returncode == 1
    assert done.stderr == (
        "CommandError: not retried (no such job, or not failed/cancelled): 999999\n"
    )
    usage = manage(app.dsn, "pgq_worker", "--concurrency", "0")
    assert usage.returncode == 2
    assert "argument --concurrency/-c: 0 is not in the range x>=1." in usage.stderr
    nowhere = make_conninfo(app.dsn, host="127.0.0.1", port=_free_port(), connect_timeout=5)
    for command in ("pgq_status", "pgq_worker"):
        down = manage(nowhere, command, "--verbosity", "0")
        assert down.returncode == 1
        assert "Traceback" not in down.stderr  # (the worker logs its tasks first)
        line = down.stderr.splitlines()[-1]
        assert line.startswith("CommandError: cannot connect to postgresql://")
        assert "password" not in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
