"""Apps for the periodic and retention tests, apart from tests/tasks.py so that
the workers of other tests neither enqueue ticks nor prune quickly. Worker
processes load them by name (``--app tests.maintenance_tasks:periodic_app``)."""

from __future__ import annotations

from datetime import timedelta

import pgq

# Enqueues a job every second: enough ticks for the dedup test in a few seconds.
periodic_app = pgq.App(retention=None)


@periodic_app.periodic(cron="* * * * * *")
@periodic_app.task(name="every_second")
def every_second() -> None:
    pass


# Prunes succeeded jobs an hour old, and looks every fifth of a second.
pruning_app = pgq.App(
    retention=pgq.Retention(succeeded=timedelta(hours=1), cancelled=None, failed=None, interval=0.2)
)


@pruning_app.task(name="noop")
def noop() -> None:
    pass
