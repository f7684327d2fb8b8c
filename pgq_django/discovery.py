"""Finding the project's tasks: the modules named in ``PGQ["TASK_MODULES"]``
("tasks") of every installed app, imported the way the admin finds admin.py."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from types import ModuleType

from django.apps import apps
from django.utils.module_loading import autodiscover_modules

from .conf import get_settings
from .registry import app

logger = logging.getLogger("pgq.django")


def discover_tasks() -> list[str]:
    """Import every installed app's task modules; return the registered task names.

    pgq_django ``@task`` functions register when their module is imported.
    Django ``@task`` functions (``django.tasks``) found in those modules are
    registered too when a ``PgqBackend`` is configured, so the worker can run
    them whichever backend their decorator named.
    """
    module_names = get_settings().task_modules
    autodiscover_modules(*module_names)
    _register_framework_tasks(_task_modules(module_names))
    return list(app.task_names())


def _task_modules(module_names: tuple[str, ...]) -> Iterator[ModuleType]:
    for config in apps.get_app_configs():
        for module_name in module_names:
            module = sys.modules.get(f"{config.name}.{module_name}")
            if module is not None:
                yield module


def _register_framework_tasks(modules: Iterator[ModuleType]) -> None:
    try:
        from . import framework
    except ImportError:
        return  # neither django.tasks nor the django-tasks backport: nothing to find
    from .backend import PgqBackend

    backends = [b for b in framework.task_backends.all() if isinstance(b, PgqBackend)]
    if not backends:
        return
    by_alias = {backend.alias: backend for backend in backends}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, framework.Task):
                backend = by_alias.get(value.backend, backends[0])
                from .framework_tasks import register

                register(value, backend.alias, backend.run_options)
