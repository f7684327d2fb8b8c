"""manage.py pgq_worker: run the project's tasks.

It has every option of `pgq worker` (read from the CLI's own declaration, see
pgq_django.management.verbs), with defaults from PGQ["WORKER"], and imports
the tasks of every installed app first (PGQ["TASK_MODULES"], "tasks" by
default). --reload restarts it when code changes, for development.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.management.base import CommandError, CommandParser

from pgq.cli import LOG_FORMAT
from pgq.exceptions import PgqError, SchemaNotMigrated
from pgq_django import worker
from pgq_django.conf import get_settings
from pgq_django.discovery import discover_tasks
from pgq_django.management.verbs import VerbCommand, add_click_parameters

logger = logging.getLogger("pgq.django")


class Command(VerbCommand):
    verb = "worker"
    # The project's App, always; its listen DSN comes from PGQ["LISTEN_DATABASE"].
    fixed: ClassVar[Mapping[str, Any]] = {"app_spec": None, "listen_dsn": None}
    help = (
        "Run a worker for this project's tasks until SIGTERM/SIGINT (or, with --burst, "
        "until no job is ready). Tasks are found in every installed app's tasks module."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_click_parameters(parser, self.parameters(), defaults=get_settings().worker.options())
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when Python code changes (development; one process, no --burst).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["verbosity"])
        values = {p.name: options[p.name] for p in self.parameters() if p.name is not None}
        processes = values.pop("processes")
        if options["reload"] and (processes > 1 or values["burst"]):
            raise CommandError(
                "--reload runs one worker process until stopped: drop --processes and --burst",
                returncode=2,
            )
        names = discover_tasks()
        if not names:
            modules = ", ".join(get_settings().task_modules)
            raise CommandError(
                f"no tasks to run: no installed app has a task in a module named {modules} "
                "(PGQ['TASK_MODULES'])"
            )
        logger.info("tasks: %s", " ".join(names))
        try:
            worker.check_schema()
            if options["reload"]:
                worker.run_with_reloader(values)
                return
            status = worker.run(values, processes)
        except SchemaNotMigrated as exc:
            raise CommandError(f"{exc} (in a Django project: manage.py migrate)") from exc
        except PgqError as exc:
            raise CommandError(str(exc)) from exc
        if status:
            raise CommandError(f"the worker stopped with exit status {status}", returncode=status)


def configure_logging(verbosity: int) -> None:
    """Show the worker's log when the project's LOGGING does not route it."""
    pgq_logger = logging.getLogger("pgq")
    if pgq_logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    pgq_logger.addHandler(handler)
    pgq_logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
