"""The upkeep a worker does besides running jobs, each on a connection of its
own: enqueueing the ticks of periodic schedules (:mod:`pgq.periodic`) and
deleting old finished jobs (:mod:`pgq.retention`).

Every worker runs both (a burst worker neither: it only drains); the database
makes sure each tick is enqueued once and one pruner works at a time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .periodic import Scheduler
from .retention import Pruner

if TYPE_CHECKING:
    from .app import App
    from .worker import WorkerConfig


def start_services(app: App, config: WorkerConfig) -> list[asyncio.Task[None]]:
    """Start the services ``app`` needs; the worker cancels them when it stops."""
    if config.burst:
        return []
    services = []
    if app.schedules:
        services.append(asyncio.create_task(Scheduler(app).run(), name="pgq-periodic"))
    if app.retention is not None:
        services.append(asyncio.create_task(Pruner(app, app.retention).run(), name="pgq-retention"))
    return services
