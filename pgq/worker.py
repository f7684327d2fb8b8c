"""The worker: claims ready jobs, runs them, records what happened.

One asyncio loop per process drives everything: a claim loop that asks for as
many jobs as it has free slots, a listener that wakes it on NOTIFY, a
heartbeat that keeps its lease and recovers the jobs of dead workers, a
watchdog that stops this worker's jobs before its lease could lapse, and a
writer that records outcomes in batches. Each is a method below.

The lease is what makes "one live holder per job" hold: other workers recover
a job once its holder's lease has expired in the database, so a worker that
cannot renew its lease stops its jobs before that moment (by its own clock,
counted from when the last successful heartbeat was sent, which is never
later than the database's), gives them back once it can, and carries on
under a new identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from . import db, store
from .exceptions import (
    ConfigurationError,
    DatabaseError,
    DatabaseUnavailable,
    InvalidOptions,
    PgqError,
)
from .executor import Executor, JobExecutor, RunningJob
from .isolation import ProcessExecutor
from .jobs import Job, JobStatus
from .logs import job_fields
from .maintenance import start_services
from .metrics import WorkerMetrics
from .migrate import check_schema
from .retry import Outcome, format_error
from .validation import queue_name

if TYPE_CHECKING:
    from .app import App

logger = logging.getLogger("pgq.worker")
T = TypeVar("T")

# Tries of an outcome write that failed for a transient reason (deadlock...).
TRANSIENT_WRITE_ATTEMPTS = 5

# An empty claim while a job looks ready means another transaction holds it
# locked (or this worker's lease lapsed): look again soon, but do not spin.
MIN_IDLE_WAIT = 0.25

# How long a stopping worker waits for an outcome write already in flight.
WRITER_SHUTDOWN_TIMEOUT = 30.0

# A listen connection that has delivered nothing for a poll interval is asked
# to prove it still reaches the server; one that does not answer is replaced.
LISTEN_CHECK_TIMEOUT = 5.0

# A statement on the work connection unanswered this long (at least) means the
# connection is cut off without a word: it is replaced.
MIN_STATEMENT_WAIT = 10.0

# How long a statement given up on gets to answer its cancellation.
CANCEL_WAIT = 2.0


async def within(
    timeout: float,
    operation: Awaitable[T],
    conn: psycopg.AsyncConnection[Any] | None = None,
    *,
    cancel: bool = True,
) -> T:
    """Await ``operation`` for at most ``timeout`` seconds, else raise TimeoutError.

    Unlike ``asyncio.wait_for``, a timeout does not wait for the operation to wind
    down: psycopg first asks the server to cancel the statement, which on a dead
    connection takes seconds more. The caller closes the connection instead.

    Given ``conn``, the connection the operation's statement runs on, the server
    is asked to cancel it (CANCEL_WAIT at most) before anything is closed: a
    statement that is only slow, or waits on a lock, would otherwise run on with
    its server connection after the caller gave up, and could commit unseen (a
    claim then holds jobs nobody runs). Its answer, rows or the cancellation
    error, is then the result; a connection that does not answer is closed.
    ``cancel=False`` only closes it: for a statement that may run on harmlessly.
    """
    task = asyncio.ensure_future(operation)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done and conn is not None and cancel:
            logger.warning("no answer within %.0fs: cancelling the statement", timeout)
            wait = min(CANCEL_WAIT, timeout)
            with contextlib.suppress(Exception):
                await conn.cancel_safe(timeout=wait)
                done, _ = await asyncio.wait({task}, timeout=wait)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # nothing left to report
    if conn is not None:
        # Closed before the statement's task winds down, so that it does not try
        # to cancel again; and wound down before anything reconnects, which
        # could reuse the socket's file descriptor that task still watches.
        with contextlib.suppress(Exception):
            await conn.close()
        await asyncio.wait({task})
    raise asyncio.TimeoutError(f"no answer within {timeout:.0f}s")


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """How a worker runs. Defaults suit most deployments.

    queues: serve only these queues (None: every queue).
    concurrency: jobs run at once by this process (threads for sync tasks).
    burst: exit once no job is ready, instead of waiting for more.
    poll_interval: seconds between claims when no NOTIFY arrives (the fallback).
    heartbeat_interval: seconds between heartbeats.
    lease_seconds: a worker silent this long is dead; its jobs go back to the queue.
    shutdown_grace: seconds running jobs get to finish after SIGTERM.
    isolation: "thread" runs jobs inside this process; "process" runs each in a
        child process that a crash, a memory blow-up or a stuck C call costs
        instead of the worker (see pgq.isolation).
    memory_limit_mb: address space each job may add to its process (isolation
        "process", Linux); a job past it fails with MemoryError.
    job_timeout: seconds a job may run when its task sets no timeout (None: no limit).
    metrics_port: serve Prometheus metrics on this port (see pgq.metrics; None: off).
    """

    queues: tuple[str, ...] | None = None
    concurrency: int = 10
    burst: bool = False
    poll_interval: float = 5.0
    heartbeat_interval: float = 5.0
    lease_seconds: float = 30.0
    shutdown_grace: float = 30.0
    isolation: str = "thread"
    memory_limit_mb: int | None = None
    job_timeout: float | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if self.queues is not None:
            if not self.queues:
                raise InvalidOptions("queues must name at least one queue (or be None for all)")
            object.__setattr__(self, "queues", tuple(queue_name(q) for q in self.queues))
        if (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            raise InvalidOptions(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        for name in ("poll_interval", "heartbeat_interval", "lease_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidOptions(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.shutdown_grace < 0:
            raise InvalidOptions(f"shutdown_grace must be >= 0, got {self.shutdown_grace!r}")
        if self.lease_seconds < 2 * self.heartbeat_interval:
            raise InvalidOptions(
                f"lease_seconds ({self.lease_seconds}) must be at least twice "
                f"heartbeat_interval ({self.heartbeat_interval}) or live workers lose their jobs"
            )
        if self.isolation not in ("thread", "process"):
            raise InvalidOptions(f"isolation must be 'thread' or 'process', got {self.isolation!r}")
        if self.job_timeout is not None and not 0 < self.job_timeout < float("inf"):
            raise InvalidOptions(f"job_timeout must be seconds > 0, got {self.job_timeout!r}")
        limit = self.memory_limit_mb
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidOptions(f"memory_limit_mb must be an integer >= 1, got {limit!r}")
            if self.isolation != "process":
                raise InvalidOptions(
                    "memory_limit_mb needs isolation='process': threads share the worker's memory"
                )
            if not sys.platform.startswith("linux"):
                raise InvalidOptions("memory_limit_mb is supported on Linux only")
        port = self.metrics_port
        if port is not None and (
            isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
        ):
            raise InvalidOptions(f"metrics_port must be a port number 1-65535, got {port!r}")


class Worker:
    """Runs the tasks of ``app``; ``run()`` blocks until stopped (SIGTERM/SIGINT)."""

    def __init__(self, app: App, **options: Any):
        queues = options.get("queues")
        if isinstance(queues, str):
            options["queues"] = tuple(q.strip() for q in queues.split(",") if q.strip())
        elif queues is not None:
            options["queues"] = tuple(queues)
        self.app = app
        self.config = WorkerConfig(**options)
        self.id = uuid.uuid4()
        self.task_names = sorted(app.tasks)
        if not self.task_names:
            raise ConfigurationError("the app has no tasks registered: nothing to run")
        self.running: dict[int, RunningJob] = {}
        self.processed = 0
        self._outcomes: list[Outcome] = []
        # Jobs whose outcome is known here but not yet written: still `running`
        # in the database, and not to be mistaken for lost claims on reconnect.
        self._unwritten: set[int] = set()
        self._lost_claims_unchecked = False
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._writer_conn: psycopg.AsyncConnection[Any] | None = None
        self._beat_conn: psycopg.AsyncConnection[Any] | None = None
        # Until this moment (time.monotonic()) the database holds this worker's lease.
        self._lease_deadline = float("inf")
        self._lease_held = False
        # Identities whose lease was lost: their jobs are given back at the next beat.
        self._abandoned: list[uuid.UUID] = []
        # The identity of the claim in flight: not to be recovered under its feet.
        self._claiming_as: uuid.UUID | None = None
        self._stop_requested = False
        config = self.config
        if config.isolation == "process":
            self._executor: JobExecutor = ProcessExecutor(
                app, memory_limit_mb=config.memory_limit_mb, job_timeout=config.job_timeout
            )
        else:
            self._executor = Executor(app.tasks, config.concurrency, config.job_timeout)
        self._statement_wait = max(MIN_STATEMENT_WAIT, self.config.lease_seconds)
        self.metrics = None
        if config.metrics_port is not None:
            self.metrics = WorkerMetrics(
                config.metrics_port, lambda: len(self.running), config.concurrency
            )

    # Running and stopping.

    def run(self) -> None:
        """Work until SIGTERM/SIGINT (or, with ``burst``, until no job is ready)."""
        asyncio.run(self._run_with_signals())

    async def _run_with_signals(self) -> None:
        loop = asyncio.get_running_loop()
        handled = threading.current_thread() is threading.main_thread()
        if handled:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        if self.metrics is not None:
            self.metrics.start()
        try:
            await self.arun()
        finally:
            if self.metrics is not None:
                self.metrics.stop()
            if handled:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self._stopping.is_set():
            logger.warning("second %s: releasing running jobs now", name)
            self._grace_over.set()
            return
        logger.info(
            "%s: stopping; %d running job(s) get %.0fs to finish",
            name,
            len(self.running),
            self.config.shutdown_grace,
        )
        self._stopping.set()

    def stop(self) -> None:
        """Stop claiming and shut down gracefully (callable from any thread)."""
        self._stop_requested = True
        loop = getattr(self, "_loop", None)
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: already stopped
                loop.call_soon_threadsafe(self._stopping.set)

    async def arun(self) -> None:
        self._stopping = asyncio.Event()
        self._grace_over = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._outcomes_ready = asyncio.Event()
        self._writer_idle = asyncio.Event()
        self._writer_idle.set()
        self._reconnecting = asyncio.Lock()
        self._writer_reconnecting = asyncio.Lock()
        self._lease_renewed = asyncio.Event()
        self._registered = False
        self._loop = asyncio.get_running_loop()  # after the events stop() sets
        if self._stop_requested:
            self._stopping.set()
        if not await self._reconnect(give_up=self._stopping):
            return
        assert self._conn is not None
        try:
            await db.arun(self._conn, check_schema())
        except PgqError:  # not migrated: fatal
            await self._conn.close()
            raise
        sent = time.monotonic()
        registered = await self._with_connection(
            self._registration, give_up=self._stopping, raise_errors=True
        )
        if registered is None:
            return
        self._registered = True
        self._hold_lease(sent)
        services = [
            asyncio.create_task(self._listen(), name="pgq-listen"),
            asyncio.create_task(self._heartbeat(), name="pgq-heartbeat"),
            asyncio.create_task(self._watch_lease(), name="pgq-lease"),
            *start_services(self.app, self.config),  # periodic schedules, retention
            asyncio.create_task(self._write_outcomes(), name="pgq-outcomes"),  # last: see _shutdown
        ]
        logger.info(
            "worker=%s started queues=%s concurrency=%d tasks=%d",
            self.id,
            ",".join(self.config.queues or ("*",)),
            self.config.concurrency,
            len(self.task_names),
        )
        try:
            await self._claim_loop()
        finally:
            await self._shutdown(services)

    # The claim loop.

    async def _claim(self, limit: int) -> list[dict[str, Any]] | None:
        """Up to ``limit`` jobs; None if the claim failed, or if the lease was lost
        while it was in flight: the jobs it took under the lost identity never
        ran, so they are released (the attempt not counted) rather than left to
        that identity's recovery, which counts it."""
        if not self._lease_held:
            # Not before the lease is known to be held, and so watched: a new
            # identity whose registration reply was lost exists in the database,
            # and could claim jobs that nothing stops when its lease runs out.
            await self._wait_any(self._lease_renewed, self._stopping)
            return None
        worker_id = self._claiming_as = self.id  # the identity outcomes are fenced with
        try:
            rows = await self._with_connection(
                lambda: store.claim_jobs(worker_id, self.config.queues, self.task_names, limit),
                give_up=self._stopping,
            )
            if not rows or worker_id == self.id:
                return rows
            ids = [row["id"] for row in rows]
            logger.warning("releasing jobs %s: claimed as this worker's lease was lost", ids)
            await self._with_connection(partial(store.release_jobs, worker_id, ids))
            return None
        finally:
            self._claiming_as = None

    async def _claim_loop(self) -> None:
        config = self.config
        while not self._stopping.is_set():
            # Here, between two claims on the work connection, and nowhere else.
            conn = self._conn
            if self._lost_claims_unchecked and conn is not None and not conn.closed:
                await self._release_lost_claims(conn)
            free = config.concurrency - len(self.running)
            if free <= 0:
                self._slot_freed.clear()
                retry = config.heartbeat_interval if self._lost_claims_unchecked else None
                await self._wait_any(self._slot_freed, self._stopping, timeout=retry)
                continue
            self._wake.clear()  # before claiming, so a NOTIFY during the claim is kept
            rows = await self._claim(free)
            if rows is None:
                continue  # stopping, or a failed statement (already logged)
            if rows and self.metrics is not None:
                self.metrics.claimed(len(rows))
            self._start_all(rows)
            if len(rows) == free:
                continue  # took all we asked for: there may be more
            if config.burst:
                if await self._burst_finished():
                    return
                continue
            timeout = await self._idle_timeout()
            await self._wait_any(self._wake, self._stopping, timeout=timeout)

    async def _burst_finished(self) -> bool:
        """True once nothing runs, every outcome is written and no job is ready."""
        if self.running:
            self._slot_freed.clear()
            await self._wait_any(self._slot_freed, self._stopping)
            return False
        if not self._writer_idle.is_set():
            await self._wait_any(self._writer_idle, self._stopping)
            return False
        rows = await self._claim(self.config.concurrency)
        self._start_all(rows or [])
        return rows == []

    async def _idle_timeout(self) -> float:
        """Sleep until the poll interval, or until the next delayed job is due."""
        timeout = self.config.poll_interval
        due_in = await self._with_connection(
            lambda: store.next_run_at(self.config.queues, self.task_names), give_up=self._stopping
        )
        if due_in is not None:
            # Ready but not claimed means another worker is claiming it right now.
            timeout = min(timeout, max(due_in, MIN_IDLE_WAIT))
        return timeout

    def _start_all(self, rows: list[dict[str, Any]]) -> None:
        # _claim has already handed back rows claimed under a lease lost meanwhile.
        for row in rows:
            self._start(row)

    def _start(self, row: dict[str, Any]) -> None:
        job = Job.from_row(row, self.app)
        assert job.worker_id is not None
        running = RunningJob.claimed(job, job.worker_id)
        self.running[job.id] = running
        running.runner = asyncio.create_task(self._execute(running))

    async def _execute(self, running: RunningJob) -> None:
        job = running.job
        started = time.monotonic()
        try:
            try:
                outcome = await self._executor.run(running)
            except asyncio.CancelledError as exc:
                if running.released:
                    return
                outcome = running.outcome(JobStatus.FAILED, error=format_error(exc))
            except Exception as exc:  # e.g. a retry_backoff callable that raised: the job
                # must still get an outcome, or it stays running while this worker lives.
                outcome = running.outcome(JobStatus.FAILED, error=format_error(exc))
            if running.lingering is not None:
                # A timed-out thread may still be inside the task: the job is not
                # handed on (retried elsewhere) before the thread has really ended.
                with contextlib.suppress(BaseException):
                    await running.lingering
            self._record(running, outcome)
        finally:
            if self.running.get(job.id) is running:
                del self.running[job.id]
            self._slot_freed.set()
        self.processed += 1
        duration = time.monotonic() - started
        if self.metrics is not None:
            self.metrics.finished(job.task, outcome.status.value, duration)
        # Every job at DEBUG; failures and retries always (a log line per job
        # costs a fast worker a quarter of its throughput).
        level = logging.DEBUG if outcome.status is JobStatus.SUCCEEDED else logging.WARNING
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "job=%d task=%s attempt=%d status=%s duration_ms=%.0f%s",
                job.id,
                job.task,
                job.attempts,
                outcome.status.value,
                duration * 1000,
                f" retry_in={outcome.retry_in:.1f}s" if outcome.status is JobStatus.QUEUED else "",
                extra=job_fields(job, outcome.status, duration),  # for --log-format json
            )

    def _record(self, running: RunningJob, outcome: Outcome) -> None:
        if running.released:
            return
        self._unwritten.add(outcome.job_id)
        self._outcomes.append(outcome)
        self._writer_idle.clear()
        self._outcomes_ready.set()

    # Recording outcomes, batched: while one write is in flight the next batch grows.

    async def _write_outcomes(self) -> None:
        while True:
            await self._outcomes_ready.wait()
            self._outcomes_ready.clear()
            while self._outcomes:
                batch, self._outcomes = self._outcomes, []
                if self.metrics is not None:
                    self.metrics.written(len(batch))
                if not await self._write(batch, give_up=self._grace_over):
                    self._outcomes[:0] = batch  # keep them for the final flush
                    break
            if not self._outcomes:
                self._writer_idle.set()
            if self._stopping.is_set() and self._grace_over.is_set():
                return  # shutdown: what is left is flushed once more, then given up

    async def _write(self, batch: list[Outcome], give_up: asyncio.Event | None) -> bool:
        """Record a batch; False if the database could not be reached."""
        try:
            written = await self._finish(batch, give_up)
        except DatabaseError as exc:
            # One outcome the database refuses must not hold back the others.
            if len(batch) > 1:
                results = [await self._write([outcome], give_up) for outcome in batch]
                return all(results)
            return await self._write_unrecordable(batch[0], exc, give_up)
        if written is None:
            return False
        self._unwritten.difference_update(o.job_id for o in batch)
        for outcome in batch:
            if outcome.job_id not in written:
                logger.warning(
                    "job=%d attempt=%d outcome=%s discarded: this worker no longer holds the "
                    "job (its lease expired and the job was recovered)",
                    outcome.job_id,
                    outcome.attempts,
                    outcome.status.value,
                )
        if any(o.status is JobStatus.QUEUED for o in batch):
            self._wake.set()  # a retry may be due before the next poll
        return True

    async def _finish(
        self, batch: list[Outcome], give_up: asyncio.Event | None
    ) -> set[int] | None:
        """finish_jobs, tried again after a deadlock, serialization failure, lock
        or statement timeout: those say nothing about the outcomes themselves."""
        for attempt in range(TRANSIENT_WRITE_ATTEMPTS):
            try:
                return await self._with_connection(
                    lambda: store.finish_jobs(batch),
                    give_up=give_up,
                    raise_errors=True,
                    writer=True,
                )
            except DatabaseError as exc:
                if not db.is_transient(exc) or attempt == TRANSIENT_WRITE_ATTEMPTS - 1:
                    raise
                logger.warning("outcome write failed (%s); trying again", exc)
                await asyncio.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    async def _write_unrecordable(
        self, outcome: Outcome, exc: DatabaseError, give_up: asyncio.Event | None
    ) -> bool:
        logger.error("job=%d outcome could not be recorded: %s", outcome.job_id, exc)
        failed = replace(
            outcome,
            status=JobStatus.FAILED,
            result=None,
            retry_in=0.0,
            error=f"pgq could not record this job's outcome ({outcome.status.value}): {exc}",
        )
        try:
            written = await self._with_connection(
                lambda: store.finish_jobs([failed]), give_up=give_up, raise_errors=True, writer=True
            )
        except DatabaseError as again:
            logger.error(
                "job=%d: not even its failure could be recorded (%s); it stays running "
                "until this worker stops and its lease expires",
                outcome.job_id,
                again,
            )
            return True
        if written is None:
            return False
        self._unwritten.discard(outcome.job_id)  # or a lost claim of it is never released
        return True

    # NOTIFY: wake the claim loop as soon as a job is committed.

    async def _listen(self) -> None:
        delay = 0.5
        quiet_check = max(1.0, self.config.poll_interval)
        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                # A direct connection where dsn goes through a transaction pooler.
                conn = await db.aconnect(self.app.listen_dsn, autocommit=True)
                await db.arun(conn, store.listen())
                delay = 0.5
                self._wake.set()  # whatever was sent while we were not listening
                while True:
                    async for notify in conn.notifies(timeout=quiet_check):
                        if self.config.queues is None or notify.payload in self.config.queues:
                            self._wake.set()
                    # Quiet for a while: a connection cut off without a word (a
                    # dead peer, a dropped route) looks exactly like this.
                    await within(LISTEN_CHECK_TIMEOUT, db.arun(conn, store.ping()))
            except (psycopg.Error, PgqError) as exc:  # PgqError: a bad listen DSN too
                logger.warning("listen connection lost (%s); polling until it is back", exc)
            except asyncio.TimeoutError:
                logger.warning(
                    "listen connection did not answer within %.0fs; polling until a new one "
                    "is up",
                    LISTEN_CHECK_TIMEOUT,
                )
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 10.0)

    # Heartbeats, cancellation requests, lease recovery.

    def _registration(self) -> db.Operation[bool]:
        return store.register_worker(
            self.id,
            socket.gethostname(),
            os.getpid(),
            self.config.queues,
            self.task_names,
            self.config.concurrency,
            self.config.lease_seconds,
        )

    def _hold_lease(self, sent: float) -> None:
        """A registration or heartbeat sent at ``sent`` (monotonic) succeeded: the
        database's expiry is at least ``lease_seconds`` after that."""
        self._lease_deadline = sent + self.config.lease_seconds
        if not self._lease_held:
            self._lease_held = True
            self._lease_renewed.set()

    async def _heartbeat(self) -> None:
        """Runs on a connection of its own, so that a long claim or outcome write
        never delays the heartbeat that keeps the lease."""
        try:
            while True:
                await self._beat()
                await asyncio.sleep(self.config.heartbeat_interval)
        finally:
            if self._beat_conn is not None:
                await self._beat_conn.close()

    async def _beat(self) -> None:
        lease = self.config.lease_seconds
        identity = self.id  # the watchdog may give it up while a statement runs
        if not self._lease_held:  # lost: carry on under the new identity once registered
            sent = time.monotonic()
            if await self._on_beat_connection(self._registration) is None or self.id != identity:
                return
            self._hold_lease(sent)
            logger.info("worker=%s registered", self.id)
            self._wake.set()
        sent = time.monotonic()
        beat = await self._on_beat_connection(lambda: store.heartbeat_worker(identity, lease))
        if beat is None or self.id != identity:
            return
        alive, cancel_ids = beat
        if not alive:
            self._lose_lease("another worker declared it dead and recovered its jobs")
            return
        self._hold_lease(sent)
        for job_id in cancel_ids:
            self._request_cancel(job_id)
        # Outcomes of an abandoned identity are written first, if they still can
        # be, and the jobs of a claim in flight under it are released instead.
        writer_idle = self._writer_idle.is_set()
        abandoned = [a for a in self._abandoned if writer_idle and a != self._claiming_as]
        recovered = await self._on_beat_connection(lambda: store.recover_expired_jobs(abandoned))
        if recovered is None:
            return
        self._abandoned = [a for a in self._abandoned if a not in abandoned]
        for row in recovered:
            logger.warning("job=%d recovered from a dead worker: now %s", row["id"], row["status"])
        if recovered:
            self._wake.set()

    async def _on_beat_connection(self, operation: Callable[[], db.Operation[T]]) -> T | None:
        """Run ``operation`` on the heartbeat connection, (re)connecting as needed;
        None if it failed or took longer than a heartbeat interval."""
        timeout = max(1.0, self.config.heartbeat_interval)
        try:
            conn = self._beat_conn
            if conn is None or conn.broken or conn.closed:
                connecting = db.aconnect(
                    self.app.dsn, autocommit=True, connect_timeout=max(2, int(timeout))
                )
                conn = self._beat_conn = await within(timeout, connecting)
            # Cancelled if it waits too long (on a lock, say): left to wait, one
            # server connection a heartbeat would pile up until the lock goes.
            return await within(timeout, db.arun(conn, operation()), conn)
        except (DatabaseError, psycopg.Error, asyncio.TimeoutError) as exc:
            logger.warning(
                "heartbeat failed (%s); lease left %.1fs",
                exc or f"no answer within {timeout:.0f}s",
                max(0.0, self._lease_deadline - time.monotonic()),
            )
            if self._beat_conn is not None:
                with contextlib.suppress(Exception):
                    await self._beat_conn.close()
                self._beat_conn = None
            return None

    async def _watch_lease(self) -> None:
        """Stop this worker's jobs before its lease could expire in the database.

        Others recover a job only after its holder's lease expired; the deadline
        here is counted from when the last good heartbeat was sent, so it comes
        first. The margin leaves time to stop the jobs.
        """
        config = self.config
        margin = min(config.heartbeat_interval, config.lease_seconds / 4)
        while True:
            if not self._lease_held:
                self._lease_renewed.clear()
                await self._lease_renewed.wait()
                continue
            remaining = self._lease_deadline - margin - time.monotonic()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            silent = time.monotonic() - (self._lease_deadline - config.lease_seconds)
            self._lose_lease(f"no heartbeat reached the database for {silent:.1f}s")

    def _lose_lease(self, reason: str) -> None:
        """The lease is lost, or about to be: this worker's jobs are another's to
        run now. Stop them without recording anything, and carry on under a new
        identity, so that no claim is ever made twice under one (worker, attempt)."""
        old, self.id = self.id, uuid.uuid4()
        self._lease_held = False
        self._lease_renewed.clear()
        self._lease_deadline = float("inf")
        self._abandoned.append(old)
        logger.error(
            "worker=%s lost its lease (%s); stopping its %d running job(s), which run "
            "again elsewhere; continuing as worker=%s",
            old,
            reason,
            len(self.running),
            self.id,
        )
        for running in list(self.running.values()):
            self._abandon(running, "this worker lost its lease")

    def _abandon(self, running: RunningJob, reason: str) -> None:
        """Stop a job whose outcome must not be recorded (another worker may run it)."""
        running.released = True
        self._executor.abort(running, reason)
        if running.runner is not None:
            running.runner.cancel()

    def _request_cancel(self, job_id: int) -> None:
        running = self.running.get(job_id)
        if running is None or running.context.cancel_requested:
            return
        running.context.request_cancel()
        logger.info("job=%d cancellation requested", job_id)
        self._executor.abort(running, "cancellation requested")

    # The work and writer connections, with reconnection. Outcomes are written
    # on a connection of their own, so that writing one batch and claiming the
    # next overlap (and their commits share the server's WAL flushes).

    async def _with_connection(
        self,
        operation: Callable[[], db.Operation[T]],
        give_up: asyncio.Event | None = None,
        raise_errors: bool = False,
        *,
        writer: bool = False,
    ) -> T | None:
        """Run a store operation on the work (or writer) connection; None if it could not run.

        A lost connection is re-established and the operation retried, until
        ``give_up`` is set (without one: a single reconnection attempt). Other
        database errors (a statement or lock timeout, say) are logged and give
        None, or are raised with ``raise_errors``: every statement pgq runs is
        atomic, so a failed one leaves nothing half done.
        """
        reconnect = self._reconnect_writer if writer else self._reconnect
        while True:
            conn = self._writer_conn if writer else self._conn
            if conn is None or conn.broken or conn.closed:
                if not await reconnect(give_up):
                    return None
                continue
            try:
                # Outcome writes and registrations are not cancelled: waiting on a
                # lock is no reason to fail them, and if one runs on, its repeat
                # matches nothing. Claims are (see within).
                cancel = not (writer or raise_errors)
                return await within(
                    self._statement_wait, db.arun(conn, operation()), conn, cancel=cancel
                )
            except asyncio.TimeoutError as exc:
                # The connection does not answer: whatever it sent has run, or
                # never will; a claim that did commit is handed back once reconnected.
                logger.warning("database connection not answering (%s); reconnecting", exc)
                with contextlib.suppress(Exception):
                    await conn.close()
            except DatabaseUnavailable as exc:
                logger.warning("database connection lost: %s", exc)
                with contextlib.suppress(Exception):
                    await conn.close()
            except DatabaseError as exc:
                if conn.broken or conn.closed:
                    continue
                if raise_errors:
                    raise
                logger.error("database error: %s", exc)
                await asyncio.sleep(0.2)
                return None

    async def _reconnect(self, give_up: asyncio.Event | None) -> bool:
        async with self._reconnecting:
            if self._conn is not None and not (self._conn.broken or self._conn.closed):
                return True  # another coroutine reconnected meanwhile
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await self._conn.close()
                self._conn = None
            connected = await self._connect(give_up)
            if connected is None:
                return False
            conn, attempt = connected
            if self._registered:
                logger.info("reconnected to the database after %d attempt(s)", attempt)
                released = await self._release_lost_claims(conn)
                if released:
                    logger.warning(
                        "released %d job(s) claimed during the outage: %s", len(released), released
                    )
                    self._wake.set()
            self._conn = conn
            return True

    async def _reconnect_writer(self, give_up: asyncio.Event | None) -> bool:
        async with self._writer_reconnecting:
            if self._writer_conn is not None and not (
                self._writer_conn.broken or self._writer_conn.closed
            ):
                return True
            if self._writer_conn is not None:
                with contextlib.suppress(Exception):
                    await self._writer_conn.close()
                self._writer_conn = None
            connected = await self._connect(give_up)
            if connected is None:
                return False
            self._writer_conn = connected[0]
            return True

    async def _connect(
        self, give_up: asyncio.Event | None
    ) -> tuple[psycopg.AsyncConnection[Any], int] | None:
        """A new connection and the attempts it took, backing off between attempts
        (one log line each) until ``give_up`` is set; None if it never came."""
        delay, attempt = 0.5, 0
        while True:
            attempt += 1
            try:
                return await db.aconnect(self.app.dsn, autocommit=True), attempt
            except DatabaseUnavailable as exc:
                if give_up is None or give_up.is_set():
                    logger.warning("%s", exc)
                    return None
                logger.warning("%s (attempt %d, next in %.1fs)", exc, attempt, delay)
            await self._wait_any(give_up, timeout=delay)
            delay = min(delay * 2, 10.0) * (0.75 + random.random() / 2)

    async def _release_lost_claims(self, conn: psycopg.AsyncConnection[Any]) -> list[int]:
        """A claim whose reply was lost with the connection committed jobs this
        worker never saw: hand them back. Retried by the claim loop on failure.

        Never while a claim is in flight on ``conn``: the jobs it is about to
        return are not known yet, and would be handed back as they start."""
        known = [*self.running, *self._unwritten]
        try:
            release = db.arun(conn, store.release_unknown_jobs(self.id, known))
            released = await within(self._statement_wait, release, conn)
        except (DatabaseError, asyncio.TimeoutError) as exc:
            logger.warning("could not check for lost claims (retried later): %s", exc)
            self._lost_claims_unchecked = True
            return []
        self._lost_claims_unchecked = False
        return released

    # Shutdown.

    async def _shutdown(self, services: Sequence[asyncio.Task[None]]) -> None:
        self._stopping.set()
        runners = [r.runner for r in self.running.values() if r.runner is not None]
        if runners and not self._grace_over.is_set():
            all_done = asyncio.ensure_future(asyncio.wait(runners))
            await self._wait_any(
                self._grace_over, timeout=self.config.shutdown_grace, also=all_done
            )
            all_done.cancel()
        self._grace_over.set()
        await self._release_unfinished()
        # Let a write in flight finish: cancelling it would lose its outcomes.
        writer = services[-1]
        self._outcomes_ready.set()
        await asyncio.wait([writer], timeout=WRITER_SHUTDOWN_TIMEOUT)
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            if not await self._write(batch, give_up=None):
                logger.error(
                    "could not record %d outcome(s): those jobs run again once this "
                    "worker's lease expires",
                    len(batch),
                )
                break
        for service in services:
            service.cancel()
        await asyncio.gather(*services, return_exceptions=True)
        await self._with_connection(lambda: store.deregister_worker(self.id))
        if self._abandoned:  # identities whose lease was lost: their jobs go back now
            abandoned = list(self._abandoned)
            await self._with_connection(lambda: store.recover_expired_jobs(abandoned))
        for conn in (self._conn, self._writer_conn):
            if conn is not None:
                await conn.close()
        self._executor.shutdown()
        logger.info("worker=%s stopped after %d job(s)", self.id, self.processed)

    async def _release_unfinished(self) -> None:
        unfinished = list(self.running.values())
        if not unfinished:
            return
        for running in unfinished:
            running.released = True
            if running.runner is not None:
                running.runner.cancel()
        by_worker: dict[uuid.UUID, list[int]] = {}
        for running in unfinished:
            by_worker.setdefault(running.worker_id, []).append(running.job.id)
        for worker_id, ids in by_worker.items():
            released = await self._with_connection(partial(store.release_jobs, worker_id, ids))
            if released is None:
                logger.error(
                    "could not release jobs %s: they return to the queue when the lease expires",
                    ids,
                )
            else:
                logger.warning(
                    "released %d unfinished job(s) back to the queue: %s", len(released), released
                )

    @staticmethod
    async def _wait_any(
        *events: asyncio.Event,
        timeout: float | None = None,
        also: asyncio.Future[Any] | None = None,
    ) -> None:
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(
                [*waiters, *([also] if also else [])],
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
