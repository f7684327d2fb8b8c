"""The App of the PgBouncer test (tests/acceptance/test_pgbouncer.py): a
schedule every second and quick retention, so that both run through the pooler
within seconds. Workers load it as ``tests.pgbouncer_tasks:app``."""

from __future__ import annotations

import time
from datetime import timedelta

import pgq

app = pgq.App(
    retention=pgq.Retention(succeeded=timedelta(hours=1), cancelled=None, failed=None, interval=0.2)
)


@app.periodic(cron="* * * * * *")
@app.task(name="tick")
def tick() -> None:
    pass


@app.task(name="add")
def add(a: int, b: int) -> int:
    return a + b


@app.task(name="sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
