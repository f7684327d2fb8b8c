"""Django's task framework, wherever this Django keeps it: ``django.tasks``
(Django 6+) or the ``django-tasks`` backport (``django_tasks``, Django 5.2).

The two share one interface; only the module and one exception name differ.
Importing this module raises ImportError when neither is installed.
"""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started

    MODULE = "django.tasks"
except ImportError:
    from django_tasks import (  # type: ignore[no-redef]
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[no-redef]
    from django_tasks.base import (  # type: ignore[no-redef]
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskError,
    )
    from django_tasks.exceptions import (  # type: ignore[no-redef]
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import TaskResultDoesNotExist  # type: ignore[no-redef]
    from django_tasks.signals import (  # type: ignore[no-redef]
        task_enqueued,
        task_finished,
        task_started,
    )

    MODULE = "django_tasks"


def set_frozen(obj: Any, name: str, value: Any) -> None:
    """Set a field of the framework's frozen dataclasses, as its own backends do."""
    object.__setattr__(obj, name, value)


__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "MODULE",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "set_frozen",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
