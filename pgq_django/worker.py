"""Running the project's tasks in a worker: Django's connection hygiene
around every job, and an optional reloader for development."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from inspect import iscoroutinefunction
from typing import Any

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from pgq import App, Worker, migrate
from pgq.cli import run_worker

from .connection import DjangoApp
from .registry import app

logger = logging.getLogger("pgq.django")

# How a job process (--isolation process) imports the worker's App.
ISOLATED_APP = "pgq_django.isolated:app"


def in_job_scope(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` bracketed by ``close_old_connections()``, as Django brackets a
    request: a job gets a working connection (a broken or expired one,
    CONN_MAX_AGE, is replaced) and leaves none behind past its age."""
    if iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            await sync_to_async(close_old_connections)()
            try:
                return await func(*args, **kwargs)
            finally:
                await sync_to_async(close_old_connections)()

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return run


def worker_app() -> App:
    """The project's App as a worker runs it: same database, same tasks, each
    wrapped by :func:`in_job_scope`. The tasks' own ``.delay()`` still uses
    ``pgq_django.app``, hence Django's connection of the thread running the job."""
    runner = DjangoApp(alias=app.alias)
    runner.tasks = {
        name: replace(task, func=in_job_scope(task.func)) for name, task in app.tasks.items()
    }
    runner.schedules = dict(app.schedules)  # the worker enqueues their ticks
    if os.environ.get("DJANGO_SETTINGS_MODULE"):  # what a job process needs to set Django up
        runner.import_spec = ISOLATED_APP
    return runner


def check_schema() -> None:
    """Raise ``SchemaNotMigrated`` now, with one clear line, rather than from
    inside a worker process."""
    app.execute(migrate.check_schema())


def run(options: dict[str, Any], processes: int = 1) -> int:
    """Run workers as ``pgq worker`` does; returns the exit status."""
    runner = worker_app()
    # Django's connections must not cross into the worker's forks or threads.
    connections.close_all()
    return run_worker(runner, processes, **options)


def run_with_reloader(options: dict[str, Any]) -> None:
    """One worker, restarted when a Python file changes (development only).

    Before a restart the worker stops as on SIGTERM: running jobs get
    ``shutdown_grace`` seconds to finish. Ctrl-C stops it at once; jobs it held
    return to the queue when its lease expires.
    """
    from django.utils import autoreload

    worker = Worker(worker_app(), **options)
    stopped = threading.Event()
    connections.close_all()  # this process only watches files from now on

    def work() -> None:
        connections.close_all()
        try:
            worker.run()
        finally:
            stopped.set()

    def finish_before_reload(sender: Any, file_path: Any, **kwargs: Any) -> None:
        logger.info("%s changed: stopping the worker to reload", file_path)
        worker.stop()
        stopped.wait(worker.config.shutdown_grace + 10)

    autoreload.file_changed.connect(finish_before_reload, weak=False)
    autoreload.run_with_reloader(work)
