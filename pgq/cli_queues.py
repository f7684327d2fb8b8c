"""Queue control verbs of the ``pgq`` command line: pause, resume, limit,
queues, move (registered on :data:`pgq.cli.cli` when that module loads)."""

from __future__ import annotations

import json
from typing import Any

import click

from .cli import Context, _ids, cli, pass_context
from .exceptions import PgqError
from .status import table as text_table


@cli.command()
@click.argument("queue")
@pass_context
def pause(context: Context, queue: str) -> None:
    """Stop workers from claiming jobs of QUEUE (running jobs finish)."""
    context.client().pause_queue(queue)
    click.echo(f"paused queue {queue}")


@cli.command()
@click.argument("queue")
@pass_context
def resume(context: Context, queue: str) -> None:
    """Let workers claim jobs of QUEUE again."""
    context.client().resume_queue(queue)
    click.echo(f"resumed queue {queue}")


CLEAR = "none"  # the value that removes a limit


class Limit(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """A number, or 'none' to remove the limit."""

    name = "limit"

    def __init__(self, kind: type[int] | type[float]) -> None:
        self.kind = kind

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value == CLEAR:
            return CLEAR
        try:
            number = self.kind(value)
        except (TypeError, ValueError):
            number = None
        positive = number is not None and (number > 0 or (self.kind is int and number == 0))
        if number is None or not positive or number == float("inf"):
            bound = ">= 0" if self.kind is int else "> 0"
            self.fail(f"{value!r} is not a {self.kind.__name__} {bound}, nor 'none'", param, ctx)
        return number


@cli.command()
@click.argument("queue")
@click.option(
    "--max-running",
    type=Limit(int),
    help="At most N jobs of QUEUE at once over all workers ('none': no limit).",
)
@click.option(
    "--rate",
    type=Limit(float),
    help="At most N jobs of QUEUE started per second, bursts of up to max(1, N) ('none': no "
    "limit).",
)
@pass_context
def limit(context: Context, queue: str, max_running: Any, rate: Any) -> None:
    """Limit QUEUE across all workers; a limit not given stays as it is."""
    if max_running is None and rate is None:
        raise click.UsageError("pass --max-running N and/or --rate N (or 'none' to remove one)")
    options = {}
    if max_running is not None:  # not given: unchanged
        options["max_running"] = None if max_running == CLEAR else max_running
    if rate is not None:
        options["rate_per_second"] = None if rate == CLEAR else rate
    row = context.client().limit_queue(queue, **options)
    click.echo(
        f"queue {queue}: max_running={_setting(row['max_running'])} "
        f"rate={_setting(row['rate_per_second'])}/s"
    )


def _setting(value: Any) -> str:
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def queues(context: Context, as_json: bool) -> None:
    """Queues with settings or live jobs: paused, limits, jobs waiting and running."""
    rows = context.client().list_queues()
    if as_json:
        click.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        click.echo("no queues")
        return
    table = [["queue", "state", "max running", "rate/s", "queued", "running"]]
    for row in rows:
        table.append(
            [
                row["name"],
                "paused" if row["paused"] else "active",
                _setting(row["max_running"]),
                _setting(row["rate_per_second"]),
                str(row["queued"]),
                str(row["running"]),
            ]
        )
    click.echo("\n".join(text_table(table)))


@cli.command()
@click.option("--from", "from_queue", required=True, help="The queue the jobs wait in.")
@click.option("--to", "to_queue", required=True, help="The queue to move them to.")
@click.option("--task", help="Only jobs of this task.")
@click.argument("job_ids", nargs=-1)
@pass_context
def move(
    context: Context,
    from_queue: str,
    to_queue: str,
    task: str | None,
    job_ids: tuple[str, ...],
) -> None:
    """Move waiting jobs of one queue (all, those of --task, or JOB_IDS) to another.
    Running jobs stay where they are."""
    ids = _ids(job_ids) if job_ids else None
    moved = context.client().move_jobs(from_queue, to_queue, task=task, ids=ids)
    click.echo(f"moved {len(moved)} job(s) from {from_queue} to {to_queue}")
    skipped = [i for i in ids or () if i not in moved]
    if skipped:
        raise PgqError(
            f"not moved (no such job, not waiting in {from_queue}"
            f"{' or not of task ' + task if task else ''}): {' '.join(map(str, skipped))}"
        )
