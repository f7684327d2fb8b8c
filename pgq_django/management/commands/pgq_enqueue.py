"""manage.py pgq_enqueue TASK [ARGUMENTS]: queue one job of a project task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pgq_django.discovery import discover_tasks
from pgq_django.management.verbs import VerbCommand


class Command(VerbCommand):
    verb = "enqueue"
    # The task is checked against the project's tasks (found as the worker finds them).
    fixed: ClassVar[Mapping[str, Any]] = {"app_spec": "pgq_django:app"}
    help_texts: ClassVar[Mapping[str, str]] = {
        "task": "A task name, as `manage.py pgq_status` or the admin shows it.",
        "arguments": "A JSON object of keyword arguments ('{\"user_id\": 1}') or a JSON "
        "array of positional ones. Default: {}.",
    }

    def handle(self, *args: Any, **options: Any) -> None:
        discover_tasks()
        super().handle(*args, **options)
