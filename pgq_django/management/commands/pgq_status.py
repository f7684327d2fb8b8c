"""manage.py pgq_status: per queue, jobs ready, scheduled, running, failed in the
last hour, throughput and the oldest waiting job; live workers. --watch redraws."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from pgq.exceptions import PgqError
from pgq.status import read_status, render, watch
from pgq_django.management.verbs import VerbCommand
from pgq_django.registry import app


class Command(VerbCommand):
    verb = "status"

    def handle(self, *args: Any, **options: Any) -> None:
        if options["watch"] is None or options["as_json"]:  # --json --watch: the verb refuses it
            super().handle(*args, **options)
            return
        # Not through the verb, which collects its output until it returns.
        try:
            watch(
                lambda: render(read_status(app)),
                options["watch"],
                lambda text: self.stdout.write(text, ending=""),
                clear=self.stdout.isatty(),
            )
        except PgqError as exc:
            raise CommandError(str(exc)) from exc
