"""The ``pgq`` command line. ``main()`` maps errors to exit codes: 0 success,
1 failure (one line on stderr, a traceback only with ``--debug``), 2 usage."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import click

from . import db, grants, logs, store, validation
from .app import App, resolve_dsn
from .exceptions import InvalidOptions, PgqError, UnknownTask
from .jobs import format_progress
from .loading import load_app
from .retention import FINISHED, MAX_BATCH_SIZE, Retention, prune_now
from .status import read_status, render
from .status import table as text_table
from .status import watch as watch_status
from .tasks import Task
from .worker import Worker, WorkerConfig

LOG_FORMAT = logs.TEXT_FORMAT


class Context:
    """What the group options leave for the verbs."""

    def __init__(self, dsn: str | None):
        self._dsn = dsn

    @property
    def dsn(self) -> str:
        return resolve_dsn(self._dsn)

    def app(self, spec: str | None = None) -> App:
        if spec is None:
            return App(self.dsn)
        app = load_app(spec)
        if self._dsn:
            app.configure(dsn=self._dsn)
        return app

    def client(self, spec: str | None = None) -> App:
        """The App for a one-shot verb. One direct connection first: an unreachable
        database then fails at once, in one line, not after the pool's timeout."""
        app = self.app(spec)
        db.connect(app.dsn, connect_timeout=app.connect_timeout).close()
        click.get_current_context().call_on_close(app.close)
        return app


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dsn", help="PostgreSQL DSN. Default: $PGQ_DSN, else $DATABASE_URL.")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="json: one JSON object per line, with job_id, task, attempt, status, duration_ms.",
)
@click.version_option(package_name="pgq-jobs", prog_name="pgq")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, debug: bool, log_level: str, log_format: str) -> None:
    """pgq: a job queue that lives in PostgreSQL."""
    logs.configure(log_level.upper(), log_format)
    ctx.obj = Context(dsn)


@cli.command()
@pass_context
def migrate(context: Context) -> None:
    """Create or update the pgq schema (safe to run from many processes at once)."""
    applied = App(context.dsn).migrate()
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


def worker_options(function: Any) -> Any:
    """The worker's options, shared with ``manage.py pgq_worker``."""
    defaults = WorkerConfig()
    options = [
        click.option("--queues", "-q", help="Comma-separated queues to serve. Default: all."),
        click.option(
            "--concurrency",
            "-c",
            type=click.IntRange(min=1),
            default=defaults.concurrency,
            show_default=True,
            help="Jobs run at once per process.",
        ),
        click.option(
            "--processes",
            "-p",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Worker processes under one supervisor.",
        ),
        click.option("--burst", is_flag=True, help="Exit 0 once no job is ready."),
        click.option(
            "--poll-interval",
            type=click.FloatRange(min=0, min_open=True),
            default=defaults.poll_interval,
            show_default=True,
            help="Seconds between polls when no NOTIFY arrives.",
        ),
        click.option(
            "--heartbeat-interval",
            type=click.FloatRange(min=0, min_open=True),
            default=defaults.heartbeat_interval,
            show_default=True,
        ),
        click.option(
            "--lease",
            "lease_seconds",
            type=click.FloatRange(min=0, min_open=True),
            default=defaults.lease_seconds,
            show_default=True,
            help="Seconds without heartbeat before a worker's jobs are recovered.",
        ),
        click.option(
            "--shutdown-grace",
            type=click.FloatRange(min=0),
            default=defaults.shutdown_grace,
            show_default=True,
            help="Seconds running jobs get to finish after SIGTERM.",
        ),
        click.option(
            "--isolation",
            type=click.Choice(["thread", "process"]),
            default=defaults.isolation,
            show_default=True,
            help="Run jobs in this process's threads, or each in a child process that a "
            "crash, a memory blow-up or a stuck C call cannot take the worker down with.",
        ),
        click.option(
            "--memory-limit",
            "memory_limit_mb",
            type=click.IntRange(min=1),
            help="MB of address space each job may add to its process (--isolation process).",
        ),
        click.option(
            "--job-timeout",
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds a job may run when its task sets no timeout.",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            help="Serve Prometheus metrics on this port at /metrics (with --processes P, "
            "process i serves PORT+i). Needs pgq-jobs[metrics].",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def run_worker(app: App, processes: int = 1, **options: Any) -> int:
    """Run workers in this process or under a supervisor; returns the exit code."""
    Worker(app, **options)  # validate options (and tasks) before forking
    if processes > 1:
        from .supervisor import supervise

        return supervise(lambda: _run_one_worker(app, options), processes, burst=options["burst"])
    return _run_one_worker(app, options)


def _run_one_worker(app: App, options: dict[str, Any]) -> int:
    try:
        Worker(app, **options).run()
        code = 0
    except PgqError as exc:
        click.echo(f"pgq: error: {exc}", err=True)
        code = 1
    # A timed-out task's thread may still run; it must not keep the process alive.
    # Idle pool threads end as soon as the pool shuts down: wait for those first,
    # or a caller in the same process (manage.py's call_command) is killed too.
    deadline = time.monotonic() + 1.0
    for thread in threading.enumerate():
        if thread.name.startswith("pgq-task"):
            thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.name.startswith("pgq-task") and t.is_alive() for t in threading.enumerate()):
        logging.shutdown()
        os._exit(code)
    return code


@cli.command()
@click.option(
    "--app",
    "app_spec",
    required=True,
    envvar="PGQ_APP",
    help="The App to run, as 'package.module:app' (or $PGQ_APP).",
)
@click.option(
    "--listen-dsn",
    help="A direct connection for LISTEN when --dsn goes through PgBouncer in transaction "
    "mode. Default: $PGQ_LISTEN_DSN, else the App's, else --dsn.",
)
@worker_options
@pass_context
def worker(
    context: Context, /, app_spec: str, listen_dsn: str | None, processes: int, **options: Any
) -> None:
    """Run a worker until SIGTERM/SIGINT (or, with --burst, until no job is ready)."""
    app = context.app(app_spec)
    if listen_dsn:
        app.configure(dsn=app._dsn, listen_dsn=listen_dsn)
    raise click.exceptions.Exit(run_worker(app, processes, **options))


@cli.command()
@click.argument("task")
@click.argument("arguments", default="{}")
@click.option(
    "--app",
    "app_spec",
    envvar="PGQ_APP",
    help="Check TASK against this App's registry (else against live workers').",
)
@click.option("--queue", help="Default: the task's queue, else 'default'.")
@click.option("--priority", type=int, help="Higher runs first. Default: the task's.")
@click.option(
    "--delay", type=click.FloatRange(min=0), help="Seconds to wait before the job may run."
)
@click.option("--unique-key", help="At most one live job per key.")
@pass_context
def enqueue(
    context: Context,
    task: str,
    arguments: str,
    app_spec: str | None,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    unique_key: str | None,
) -> None:
    """Queue one job of TASK with ARGUMENTS: a JSON object of keyword arguments
    (or a JSON array of positional ones)."""
    try:
        decoded = json.loads(arguments)
    except (ValueError, RecursionError) as exc:  # ValueError: also numbers past int's limit
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="ARGUMENTS") from None
    if not isinstance(decoded, (dict, list)):
        raise click.BadParameter("must be a JSON object or array", param_hint="ARGUMENTS")
    args, kwargs = (decoded, {}) if isinstance(decoded, list) else ([], decoded)
    options = {
        key: value
        for key, value in {
            "queue": queue,
            "priority": priority,
            "run_after": delay,
            "unique_key": unique_key,
        }.items()
        if value is not None
    }
    if app_spec:
        app = context.client(app_spec)
        job = app.get_task(task).using(**options).delay(*args, **kwargs)
    else:
        app = context.client()
        known = app.execute(store.live_task_names())
        if task not in known:
            raise UnknownTask(
                f"unknown task {task!r}: no live worker has registered it (pass --app to check "
                "against your App instead)"
            )
        # Not registered here: the worker that knows the task runs it.
        by_name: Task[Any, Any] = Task(func=_runs_only_in_a_worker, app=app, name=task)
        job = by_name.using(**options).delay(*args, **kwargs)
    click.echo(f"enqueued job {job.id} task={job.task} queue={job.queue} status={job.status}")


def _runs_only_in_a_worker(*args: Any, **kwargs: Any) -> None:
    raise PgqError("this task is enqueued by name and runs only in a worker")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Redraw every SECONDS (default 2) until Ctrl-C.",
)
@pass_context
def status(context: Context, as_json: bool, watch: float | None) -> None:
    """Per queue: jobs ready, scheduled, running, failed in the last hour,
    throughput, oldest waiting job; live workers."""
    if as_json and watch is not None:
        raise click.UsageError("--watch redraws a table: it does not go with --json")
    app = context.client()
    if as_json:
        click.echo(json.dumps(read_status(app).as_json(), default=str, indent=2))
    elif watch is None:
        click.echo(render(read_status(app)))
    else:
        watch_status(
            lambda: render(read_status(app)),
            watch,
            lambda text: click.echo(text, nl=False),
            clear=sys.stdout.isatty(),
        )


@cli.command()
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]),
)
@click.option("--queue")
@click.option("--task")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def jobs(
    context: Context,
    status_filter: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs, newest first."""
    found = context.client().list_jobs(status=status_filter, queue=queue, task=task, limit=limit)
    if as_json:
        keys = (
            "id",
            "queue",
            "task",
            "args",
            "kwargs",
            "priority",
            "status",
            "attempts",
            "max_attempts",
            "run_at",
            "created_at",
            "started_at",
            "finished_at",
            "last_error",
            "result",
            "unique_key",
            "progress",
        )
        click.echo(
            json.dumps([{k: getattr(j, k) for k in keys} for j in found], default=str, indent=2)
        )
        return
    if not found:
        click.echo("no jobs")
        return
    table = [["id", "status", "queue", "task", "attempts", "age", "progress", "error"]]
    now = datetime.now(timezone.utc)
    for job in found:
        error = (job.last_error or "").splitlines()[0][:60] if job.last_error else ""
        age = f"{(now - job.created_at).total_seconds():.0f}s"
        table.append(
            [
                str(job.id),
                job.status.value,
                job.queue,
                job.task,
                f"{job.attempts}/{job.max_attempts}",
                age,
                format_progress(job.progress),
                error,
            ]
        )
    click.echo("\n".join(text_table(table)))



def _ids(values: Sequence[str]) -> list[int]:
    try:
        ids = [int(v) for v in values]
    except ValueError:
        raise click.BadParameter(f"job ids are integers, got {' '.join(values)}") from None
    if any(i <= 0 for i in ids):
        raise click.BadParameter("job ids are positive integers")
    return ids


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
@pass_context
def retry(context: Context, job_ids: tuple[str, ...]) -> None:
    """Put failed or cancelled jobs back in the queue."""
    ids = _ids(job_ids)
    moved = context.client().retry(*ids)
    if moved:
        click.echo(f"queued again: {' '.join(map(str, moved))}")
    skipped = [i for i in ids if i not in moved]
    if skipped:
        raise PgqError(
            f"not retried (no such job, or not failed/cancelled): {' '.join(map(str, skipped))}"
        )


@cli.command()
@click.argument("job_ids", nargs=-1, required=True)
@pass_context
def cancel(context: Context, job_ids: tuple[str, ...]) -> None:
    """Cancel queued jobs; ask running ones to stop."""
    ids = _ids(job_ids)
    result = context.client().cancel(*ids)
    cancelled = [i for i, s in result.items() if s == "cancelled"]
    requested = [i for i, s in result.items() if s == "running"]
    if cancelled:
        click.echo(f"cancelled: {' '.join(map(str, cancelled))}")
    if requested:
        click.echo(f"cancellation requested (running): {' '.join(map(str, requested))}")
    skipped = [i for i in ids if i not in result]
    if skipped:
        raise PgqError(
            f"not cancelled (no such job, or already finished): {' '.join(map(str, skipped))}"
        )


class Duration(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """'90s', '15m', '12h', '7d', '2w', '1d12h', or seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return validation.duration(value, "duration")
        except InvalidOptions:
            self.fail(f"{value!r} is not a duration > 0 such as 90s, 15m, 12h, 7d, 2w", param, ctx)


@cli.command()
@click.option(
    "--app",
    "app_spec",
    envvar="PGQ_APP",
    help="Apply this App's retention settings ('package.module:app', or $PGQ_APP).",
)
@click.option(
    "--older-than",
    type=Duration(),
    help="Delete the finished jobs that finished longer ago than this ('12h', '7d', '2w', "
    "or seconds), whatever the App's retention says.",
)
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(FINISHED),
    help="With --older-than: only jobs of this status. Default: every finished status.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    help="Rows deleted per statement. Default: the App's retention batch size, else 1000.",
)
@pass_context
def prune(
    context: Context,
    app_spec: str | None,
    older_than: timedelta | None,
    status_filter: str | None,
    batch_size: int | None,
) -> None:
    """Delete old finished jobs now, in small batches that never block workers
    (workers do it on their own every few minutes; see the README's Retention)."""
    if older_than is None and app_spec is None:
        raise click.UsageError(
            "pass --older-than DURATION, or --app MODULE:APP to apply its retention"
        )
    if status_filter is not None and older_than is None:
        raise click.UsageError("--status goes with --older-than")
    app = context.client(app_spec)
    configured = app.retention
    if older_than is not None:
        statuses = (status_filter,) if status_filter else FINISHED
        size = batch_size or (configured.batch_size if configured else 1000)
        retention = Retention.older_than(older_than, statuses, size)
    elif configured is None:
        raise PgqError(
            "this App keeps finished jobs forever (retention=None): pass --older-than to prune"
        )
    else:
        retention = replace(configured, batch_size=batch_size or configured.batch_size)
    click.echo(prune_now(app.dsn, retention))


@cli.command()
@click.argument("role")
@click.option("--worker", "kind", flag_value="worker", help="What `pgq worker` needs.")
@click.option("--producer", "kind", flag_value="producer", help="Enqueue and read jobs only.")
@click.option("--print", "print_only", is_flag=True, help="Print the SQL; run nothing.")
@pass_context
def grant(context: Context, role: str, kind: grants.Kind | None, print_only: bool) -> None:
    """Grant an existing ROLE the least privileges pgq needs (run as the schema's owner)."""
    if kind is None:
        raise click.UsageError("pass --worker or --producer")
    if print_only:
        click.echo(grants.grant_script(role, kind))
        return
    grants.grant(context.dsn, role, kind)
    click.echo(f"granted {kind} privileges on schema pgq to {role}")


@cli.command()
@click.option("--dsn", "demo_dsn", help="Run against this database instead of a throwaway one.")
@pass_context
def demo(context: Context, demo_dsn: str | None) -> None:
    """Start a throwaway PostgreSQL (unless a DSN is given), queue a mix of jobs,
    work them off and print what happened."""
    from .demo import run_demo

    dsn = demo_dsn or context._dsn or os.environ.get("PGQ_DSN") or os.environ.get("DATABASE_URL")
    run_demo(dsn)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="pgq", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        exc.show()
        return 1
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except PgqError as exc:
        if "--debug" in args:
            raise
        click.echo(f"pgq: error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    sys.exit(main())


from . import cli_queues  # noqa: E402,F401  (registers the queue control verbs)
