"""The ``pgq_django`` application."""

from __future__ import annotations

from django.apps import AppConfig

from pgq.serialization import add_argument_check


class PgqConfig(AppConfig):
    name = "pgq_django"
    label = "pgq_django"
    verbose_name = "Job queue"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .arguments import reject_model_instances

        add_argument_check(reject_model_instances)
