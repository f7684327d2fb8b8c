"""The App: a DSN, a registry of tasks, and connections made on first use."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta, tzinfo
from typing import Any, TypeVar, overload

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from . import db, periodic, store, validation
from .exceptions import ConfigurationError, DatabaseUnavailable, InvalidOptions, UnknownTask
from .hooks import AfterTask, BeforeTask, Hooks, OnFailure, checked
from .jobs import Job
from .migrate import check_schema
from .periodic import Schedule
from .retention import Retention, retention_option
from .retry import Backoff
from .tasks import P, R, Task, UniqueKey

T = TypeVar("T")

DSN_VARIABLES = ("PGQ_DSN", "DATABASE_URL")
LISTEN_DSN_VARIABLE = "PGQ_LISTEN_DSN"
# A job row is read whole by every claim and every admin page; payloads larger
# than this belong in storage of their own, passed by reference.
MAX_ARGUMENT_BYTES = 1024 * 1024


class _Unset:
    """A keyword argument not passed (None has a meaning of its own)."""


UNSET = _Unset()


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN argument, else ``PGQ_DSN``, else ``DATABASE_URL``."""
    if dsn:
        return dsn
    for variable in DSN_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    raise ConfigurationError()


class App:
    """Tasks and the database they are queued in.

    Building an App is cheap and connects to nothing: connections open on first
    use, so an App can be made at import time (before Django settings exist).

    ``listen_dsn`` (else ``$PGQ_LISTEN_DSN``, else ``dsn``): where workers LISTEN
    for new jobs. Give one when ``dsn`` goes through a pooler in transaction mode
    (PgBouncer), which cannot carry a LISTEN: a direct connection to the same
    database. ``dsn`` is then treated as pooled: no statement is prepared on
    the server (a pooler hands each transaction to any server connection).
    """

    # What ``@app.task`` builds; a subclass of Task may add calling conventions.
    task_class: type[Task[Any, Any]] = Task

    def __init__(
        self,
        dsn: str | None = None,
        *,
        listen_dsn: str | None = None,
        pool_size: int = 4,
        connect_timeout: int = 10,
        max_argument_bytes: int | None = MAX_ARGUMENT_BYTES,
        retention: Retention | None = Retention(),  # noqa: B008  (immutable)
    ):
        self._dsn = dsn
        if listen_dsn:
            db.check_dsn(listen_dsn)
        self._listen_dsn = listen_dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        # The JSON of one call's arguments, args and kwargs together; None: no limit.
        self.max_argument_bytes = validation.max_argument_bytes(max_argument_bytes)
        self._schema_checked = False
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        # How long workers keep finished jobs (see pgq.retention); None: forever.
        self.retention = retention_option(retention)
        # Where a fresh interpreter finds this App ("package.module:attr"), as job
        # processes must (worker isolation="process"); load_app records it.
        self.import_spec: str | None = None
        # Functions run around each job in the worker (see pgq.hooks).
        self.hooks = Hooks()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._apool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def dsn(self) -> str:
        return resolve_dsn(self._dsn)

    @property
    def listen_dsn(self) -> str:
        return self._separate_listen_dsn() or self.dsn

    @property
    def pooled(self) -> bool:
        """True when ``dsn`` goes through a transaction-mode pooler (a separate
        listen DSN says so): statements are then never prepared on the server."""
        listen_dsn = self._separate_listen_dsn()
        return listen_dsn is not None and listen_dsn != self.dsn

    def _separate_listen_dsn(self) -> str | None:
        return self._listen_dsn or os.environ.get(LISTEN_DSN_VARIABLE) or None

    def configure(self, *, dsn: str | None, listen_dsn: str | None = None) -> None:
        """Point the App at another database; open connections are closed."""
        if listen_dsn:
            db.check_dsn(listen_dsn)
        self.close()
        self._dsn = dsn
        self._listen_dsn = listen_dsn
        self._schema_checked = False

    # Registry.

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 3,
        timeout: float | timedelta | None = None,
        retry_backoff: Backoff = 2.0,
        retry_on: tuple[type[BaseException], ...] = (Exception,),
        unique: UniqueKey = False,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(  # type: ignore[misc]  # options are checked by Task
        self, func: Callable[..., Any] | None = None, /, *, name: str | None = None, **options: Any
    ) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(queue=...)``.

        ``timeout`` (seconds) bounds one attempt; ``max_attempts`` counts every
        attempt; ``retry_backoff`` is a base delay in seconds (doubled at each
        attempt, with jitter) or a function attempt -> seconds; ``retry_on``
        limits retries to those exception types; ``unique=True`` (or a function
        of the arguments returning a key) keeps one live job per key.
        """

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{function.__module__}.{function.__qualname__}"
            if task_name in self.tasks and self.tasks[task_name].func is not function:
                raise InvalidOptions(f"a different task is already registered as {task_name!r}")
            registered: Task[Any, Any] = self.task_class(
                func=function, app=self, name=task_name, **options
            )
            self.tasks[task_name] = registered
            return registered

        return register(func) if func is not None else register

    def periodic(
        self,
        cron: str,
        *,
        timezone: str | tzinfo = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        name: str | None = None,
        max_delay: float | timedelta | str | None = None,
    ) -> Callable[[Task[P, R]], Task[P, R]]:
        """Enqueue a task on a cron schedule: ``@app.periodic(cron="*/5 * * * *")``
        above ``@app.task``. Workers enqueue one job per tick, whatever their number.

        ``cron``: 5 fields (minute hour day-of-month month day-of-week), 6 with
        seconds first, or a nickname (``@hourly``, ``@daily``...), read in
        ``timezone`` (an IANA name). ``args``/``kwargs`` are the jobs' arguments.
        ``name`` (default: the task's name) identifies the schedule; a task with
        several schedules needs one per schedule. After downtime the latest
        missed tick gets one job, unless it is older than ``max_delay``.
        """
        periodic.cron_expression(cron)  # a bad expression or zone fails here, before the task
        periodic.time_zone(timezone)

        def declare(task: Task[P, R]) -> Task[P, R]:
            schedule = Schedule.declare(
                task,
                cron=cron,
                timezone=timezone,
                args=args,
                kwargs=kwargs,
                name=name,
                max_delay=max_delay,
            )
            if schedule.task.app is not self:
                raise InvalidOptions(f"task {schedule.task.name!r} belongs to another App")
            existing = self.schedules.get(schedule.name)
            if existing is not None and existing != schedule:
                raise InvalidOptions(
                    f"a different schedule is already declared as {schedule.name!r}: "
                    "give each schedule of a task its own name="
                )
            self.schedules[schedule.name] = schedule
            return task

        return declare

    # Hooks: run by workers around each job, where the task runs (see pgq.hooks).

    def before_task(self, function: BeforeTask) -> BeforeTask:
        """``@app.before_task``: ``function(job)`` before each job's task runs."""
        self.hooks.before.append(checked(function))
        return function

    def after_task(self, function: AfterTask) -> AfterTask:
        """``@app.after_task``: ``function(job, status, exc)`` after each attempt;
        ``status`` is what the attempt led to, ``exc`` None unless it raised."""
        self.hooks.after.append(checked(function))
        return function

    def on_failure(self, function: OnFailure) -> OnFailure:
        """``@app.on_failure``: ``function(job, exc, status)`` when an attempt raises;
        ``status`` QUEUED means it will be retried, FAILED that it will not."""
        self.hooks.failure.append(checked(function))
        return function

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTask(f"unknown task {name!r} (registered: {known})") from None

    # Connections.

    def _connection_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"connect_timeout": self.connect_timeout, "autocommit": True}
        if self.pooled:
            options["prepare_threshold"] = db.NEVER_PREPARE
        return options

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        with self._lock:
            if self._pool is None:
                dsn = self.dsn
                db.check_dsn(dsn)
                self._pool = ConnectionPool(
                    dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.connect_timeout,
                    kwargs=self._connection_options(),
                    # A connection broken by a server restart is replaced, not handed out.
                    check=_check_unless_just_used,
                    reset=_note_return,
                    open=True,
                    name="pgq",
                )
            return self._pool

    async def _get_apool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        loop = asyncio.get_running_loop()
        if self._apool is None or self._apool_loop is not loop:
            dsn = self.dsn
            db.check_dsn(dsn)
            self._apool = AsyncConnectionPool(
                dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                kwargs=self._connection_options(),
                check=_acheck_unless_just_used,
                reset=_anote_return,
                open=False,
                name="pgq-async",
            )
            self._apool_loop = loop
            await self._apool.open()
        return self._apool

    def _unavailable(self) -> DatabaseUnavailable:
        # The pool only says it timed out; one direct attempt gives the real reason.
        try:
            db.connect(self.dsn, connect_timeout=self.connect_timeout).close()
        except DatabaseUnavailable as exc:
            return exc
        return DatabaseUnavailable(f"no connection to {db.describe_dsn(self.dsn)} became free")

    @contextmanager
    def connection(self, connection: Any = None) -> Iterator[psycopg.Connection[Any]]:
        """The given connection as is, or one from the App's pool in autocommit
        mode: each statement commits on its own (use ``conn.transaction()`` for
        more), which spares one-statement enqueues a BEGIN and a COMMIT."""
        if connection is not None:
            if not isinstance(connection, psycopg.Connection):
                raise InvalidOptions(
                    f"connection must be a psycopg Connection, got {type(connection).__name__}"
                )
            yield connection
            return
        try:
            with self._get_pool().connection() as conn, db.translated_errors():
                yield conn
        except PoolTimeout:
            raise self._unavailable() from None

    @asynccontextmanager
    async def aconnection(
        self, connection: Any = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if connection is not None:
            if not isinstance(connection, psycopg.AsyncConnection):
                raise InvalidOptions(
                    f"connection must be a psycopg AsyncConnection, got {type(connection).__name__}"
                )
            yield connection
            return
        pool = await self._get_apool()
        try:
            async with pool.connection() as conn:
                with db.translated_errors():
                    yield conn
        except PoolTimeout:
            raise self._unavailable() from None

    def execute(
        self, operation: db.Operation[T], connection: Any = None, *, atomic: bool = False
    ) -> T:
        """Run a store operation on ``connection``, else on a pooled connection.

        With ``atomic``, a connection in autocommit mode runs the statements in
        one transaction; any other is already inside its owner's transaction.
        """
        prepare = False if self.pooled else None
        with self.connection(connection) as conn:
            if not self._schema_checked:
                db.run(conn, check_schema())
                self._schema_checked = True
            if not (atomic and conn.autocommit):
                return db.run(conn, operation, prepare=prepare)
            with db.translated_errors(), conn.transaction():
                return db.run(conn, operation, prepare=prepare)

    async def aexecute(
        self, operation: db.Operation[T], connection: Any = None, *, atomic: bool = False
    ) -> T:
        prepare = False if self.pooled else None
        async with self.aconnection(connection) as conn:
            if not self._schema_checked:
                await db.arun(conn, check_schema())
                self._schema_checked = True
            if not (atomic and conn.autocommit):
                return await db.arun(conn, operation, prepare=prepare)
            with db.translated_errors():
                async with conn.transaction():
                    return await db.arun(conn, operation, prepare=prepare)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
        self._apool = None  # an async pool is bound to its loop; aclose() closes it

    async def aclose(self) -> None:
        if self._apool is not None:
            await self._apool.close()
            self._apool = None
        self.close()

    # Jobs.

    def get_job(self, job_id: int, *, connection: Any = None) -> Job:
        return Job.from_row(self.execute(store.get_job(job_id), connection), self)

    async def aget_job(self, job_id: int, *, connection: Any = None) -> Job:
        return Job.from_row(await self.aexecute(store.get_job(job_id), connection), self)

    def retry(self, *job_ids: int, connection: Any = None) -> list[int]:
        """Put failed or cancelled jobs back in the queue; returns the ids that moved."""
        return self.execute(store.retry_jobs(job_ids), connection)

    async def aretry(self, *job_ids: int, connection: Any = None) -> list[int]:
        return await self.aexecute(store.retry_jobs(job_ids), connection)

    def cancel(self, *job_ids: int, connection: Any = None) -> dict[int, str]:
        """Cancel queued jobs at once; ask running ones to stop (the task sees it
        through ``pgq.current_job().cancel_requested``; async tasks are cancelled).
        Returns {id: status after the call} for the jobs that were still live."""
        rows = self.execute(store.cancel_jobs(job_ids), connection)
        return {row["id"]: str(row["status"]) for row in rows}

    async def acancel(self, *job_ids: int, connection: Any = None) -> dict[int, str]:
        rows = await self.aexecute(store.cancel_jobs(job_ids), connection)
        return {row["id"]: str(row["status"]) for row in rows}

    def list_jobs(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        task: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        if queue is not None:
            validation.queue_name(queue)
        if task is not None:
            validation.task_name(task)
        rows = self.execute(store.list_jobs(status, queue, task, limit))
        return [Job.from_row(row, self) for row in rows]

    # Queue control.

    def pause_queue(self, queue: str, *, connection: Any = None) -> None:
        """Workers claim nothing more from ``queue`` (from their next claim on);
        jobs already running finish. Jobs can still be enqueued."""
        self.execute(store.set_queue_paused(validation.queue_name(queue), True), connection)

    def resume_queue(self, queue: str, *, connection: Any = None) -> None:
        self.execute(store.set_queue_paused(validation.queue_name(queue), False), connection)

    def limit_queue(
        self,
        queue: str,
        *,
        max_running: int | _Unset | None = UNSET,
        rate_per_second: float | _Unset | None = UNSET,
        connection: Any = None,
    ) -> dict[str, Any]:
        """Limit ``queue`` over all workers: at most ``max_running`` of its jobs
        at once, at most ``rate_per_second`` started per second. None removes a
        limit; a limit not passed stays as it is. Returns the queue's settings."""
        name = validation.queue_name(queue)
        running = None if isinstance(max_running, _Unset) else max_running
        rate = None if isinstance(rate_per_second, _Unset) else rate_per_second
        if running is not None and (
            isinstance(running, bool) or not isinstance(running, int) or running < 0
        ):
            raise InvalidOptions(f"max_running must be an integer >= 0, got {running!r}")
        if rate is not None and (
            isinstance(rate, bool)
            or not isinstance(rate, (int, float))
            or not 0 < rate < float("inf")
        ):
            raise InvalidOptions(f"rate_per_second must be a number > 0, got {rate!r}")
        operation = store.set_queue_limits(
            name,
            running,
            None if rate is None else float(rate),
            set_max_running=not isinstance(max_running, _Unset),
            set_rate=not isinstance(rate_per_second, _Unset),
        )
        return self.execute(operation, connection)

    def list_queues(self, *, connection: Any = None) -> list[dict[str, Any]]:
        """Queues with settings or live jobs: name, paused, max_running,
        rate_per_second, queued, running."""
        return self.execute(store.list_queues(), connection)

    def move_jobs(
        self,
        from_queue: str,
        to_queue: str,
        *,
        task: str | None = None,
        ids: Sequence[int] | None = None,
        connection: Any = None,
    ) -> list[int]:
        """Move waiting jobs of ``from_queue`` (only those of ``task``, or with
        these ``ids``, if given) to ``to_queue``; running jobs stay. Returns the
        ids moved."""
        source, target = validation.queue_name(from_queue), validation.queue_name(to_queue)
        if task is not None:
            validation.task_name(task)
        if ids is not None:
            ids = list(ids)
            if any(isinstance(i, bool) or not isinstance(i, int) or i <= 0 for i in ids):
                raise InvalidOptions("job ids are positive integers")
        return self.execute(store.move_jobs(source, target, task, ids), connection)

    # Schema and worker.

    def migrate(self) -> list[str]:
        """Apply pending schema migrations; returns the names applied."""
        from .migrate import migrate

        return migrate(self.dsn)

    def run_worker(self, **options: Any) -> None:
        """Run a worker in this process until stopped (see :class:`pgq.worker.Worker`)."""
        from .worker import Worker

        Worker(self, **options).run()

    def task_names(self) -> Sequence[str]:
        return sorted(self.tasks)


# Checking a pooled connection before handing it out costs a round trip, as much
# as the enqueue itself; one returned to the pool a moment ago is known good.
RECENTLY_USED = 1.0


def _note_return(conn: psycopg.Connection[Any]) -> None:
    conn._pgq_returned_at = time.monotonic()  # type: ignore[attr-defined]


async def _anote_return(conn: psycopg.AsyncConnection[Any]) -> None:
    conn._pgq_returned_at = time.monotonic()  # type: ignore[attr-defined]


def _just_used(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return time.monotonic() - getattr(conn, "_pgq_returned_at", -RECENTLY_USED) < RECENTLY_USED


def _check_unless_just_used(conn: psycopg.Connection[Any]) -> None:
    if not _just_used(conn):
        ConnectionPool.check_connection(conn)


async def _acheck_unless_just_used(conn: psycopg.AsyncConnection[Any]) -> None:
    if not _just_used(conn):
        await AsyncConnectionPool.check_connection(conn)
