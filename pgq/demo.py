"""``pgq demo``: the queue at work in a few seconds, on a throwaway database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import click

from .app import App
from .context import current_job
from .exceptions import Fail
from .jobs import Job
from .tempdb import TemporaryPostgres
from .worker import Worker

app = App()


@app.task(name="demo.send_welcome")
def send_welcome(user: str) -> str:
    return f"welcome mail sent to {user}"


@app.task(name="demo.urgent_report", priority=10)
def urgent_report(pages: int) -> dict[str, int]:
    return {"pages": pages}


@app.task(name="demo.reminder")
async def reminder(text: str) -> str:
    await asyncio.sleep(0.01)
    return f"reminded: {text}"


@app.task(name="demo.flaky_upload", max_attempts=3, retry_backoff=0.2)
def flaky_upload(path: str) -> str:
    if current_job().attempt == 1:
        raise ConnectionError("storage timed out (first attempt always does, for the demo)")
    return f"uploaded {path}"


@app.task(name="demo.charge_card", max_attempts=2, retry_backoff=0.2)
def charge_card(card: str) -> None:
    raise Fail(f"card {card} was declined")


@contextlib.contextmanager
def _database(dsn: str | None) -> Iterator[str]:
    if dsn:
        yield dsn
        return
    click.echo("starting a throwaway PostgreSQL...")
    with TemporaryPostgres() as postgres:
        yield postgres.dsn


def run_demo(dsn: str | None) -> None:
    logging.getLogger("pgq").setLevel(logging.WARNING)
    with _database(dsn) as database:
        app.configure(dsn=database)
        applied = app.migrate()
        click.echo(f"migrated: {', '.join(applied) or 'already up to date'}")
        jobs = _enqueue()
        click.echo(f"enqueued {len(jobs)} jobs; running a worker until they settle...")
        started = time.monotonic()
        _work_until_settled(jobs)
        elapsed = time.monotonic() - started
        _print_summary(jobs, elapsed)
        app.close()


def _enqueue() -> list[Job]:
    jobs = [send_welcome.delay(name) for name in ("ada", "grace", "linus")]
    jobs.append(reminder.using(run_after=timedelta(seconds=1)).delay("stand-up in 5 minutes"))
    jobs.append(flaky_upload.delay("/reports/q3.pdf"))
    jobs.append(charge_card.delay("4242-XXXX"))
    jobs.append(urgent_report.delay(12))  # enqueued last, runs first: priority 10
    return jobs


def _work_until_settled(jobs: list[Job], timeout: float = 60.0) -> None:
    worker = Worker(app, concurrency=1, poll_interval=0.5)

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(job.refresh().is_finished for job in jobs):
                break
            time.sleep(0.1)
        worker.stop()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker.run()
    watcher.join()


def _print_summary(jobs: list[Job], elapsed: float) -> None:
    click.echo(f"\nall settled in {elapsed:.1f}s; in the order they first started:\n")
    ordered = sorted(jobs, key=lambda j: (j.started_at is None, j.started_at))
    for job in ordered:
        outcome = job.result if job.error is None or job.status.value == "succeeded" else None
        detail = (
            repr(outcome) if job.status.value == "succeeded" else (job.error or "").splitlines()[0]
        )
        click.echo(
            f"  #{job.id:<3} {job.task:<20} priority={job.priority:<3} "
            f"{job.status.value:<9} attempts={job.attempts}  {detail}"
        )
    click.echo(
        "\nurgent_report ran first (priority 10), reminder waited for its run_after, "
        "flaky_upload succeeded on its retry, charge_card failed for good: "
        "`pgq retry <id>` would queue it again."
    )
