"""One operation per query, named after what it does to what.

Each operation is a generator run by :func:`pgq.db.run` or :func:`pgq.db.arun`,
so the sync and async APIs share every line of logic here.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from .db import Operation, Query, Rows
from .exceptions import JobNotFound
from .retry import Outcome


@dataclass(frozen=True)
class NewJob:
    """A job about to be inserted; arguments already encoded as JSON text."""

    queue: str
    task: str
    args: str
    kwargs: str
    priority: int
    max_attempts: int
    run_at: datetime | None = None  # absolute time, or
    delay: float = 0.0  # seconds from the database's now()
    unique_key: str | None = None

    def params(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every value, a tenth of an enqueue.
        return {name: getattr(self, name) for name in _NEW_JOB_FIELDS}


_NEW_JOB_FIELDS = tuple(f.name for f in fields(NewJob))


def insert_job(job: NewJob) -> Operation[dict[str, Any]]:
    """Insert one job, or return the live job that already holds its unique key."""
    while True:
        rows = yield Query("insert_job", job.params())
        if rows:
            return rows[0]
        rows = yield Query("get_live_job_by_unique_key", {"unique_key": job.unique_key})
        if rows:
            return rows[0]
        # The job holding the key finished between the two statements: insert again.


def insert_jobs(jobs: Sequence[NewJob]) -> Operation[list[int]]:
    """Insert many jobs in one statement; one NOTIFY per queue. Returns their ids in order."""
    if not jobs:
        return []
    rows = yield Query(
        "insert_jobs", {"jobs": "[" + ",".join(map(_json_job, jobs)) + "]"}, prepare=False
    )
    return list(rows[0]["ids"])


@functools.lru_cache(maxsize=256)  # a batch repeats one queue and task name
def _json_text(text: str) -> str:
    return json.dumps(text)


def _json_job(job: NewJob) -> str:
    # args and kwargs are JSON text already (encoded and checked on enqueue).
    return (
        f'{{"queue":{_json_text(job.queue)},"task":{_json_text(job.task)},'
        f'"args":{job.args},"kwargs":{job.kwargs},"priority":{job.priority},'
        f'"max_attempts":{job.max_attempts},'
        f'"run_at":{json.dumps(job.run_at.isoformat()) if job.run_at else "null"},'
        f'"delay":{float(job.delay)!r}}}'
    )


def get_job(job_id: int) -> Operation[dict[str, Any]]:
    rows = yield Query("get_job", {"id": job_id})
    if not rows:
        raise JobNotFound(f"no job with id {job_id}")
    return rows[0]


def retry_jobs(ids: Sequence[int]) -> Operation[list[int]]:
    """Failed or cancelled jobs back to ``queued``; returns the ids that moved."""
    rows = yield Query("retry_jobs", {"ids": list(ids)})
    for queue in sorted({row["queue"] for row in rows}):
        yield Query("notify_queue", {"queue": queue})
    return [row["id"] for row in rows]


def cancel_jobs(ids: Sequence[int]) -> Operation[Rows]:
    """Cancel queued jobs, request cancellation of running ones; rows (id, status)."""
    return (yield Query("cancel_jobs", {"ids": list(ids)}))


def list_jobs(
    status: str | None = None,
    queue: str | None = None,
    task: str | None = None,
    limit: int = 50,
) -> Operation[Rows]:
    params = {"status": status, "queue": queue, "task": task, "limit": limit}
    return (yield Query("list_jobs", params))


def queue_status() -> Operation[Rows]:
    return (yield Query("queue_status"))


def queue_overview() -> Operation[Rows]:
    """Per queue: queued, scheduled, running, failed in the last hour, succeeded
    in the last minute, oldest waiting age (see pgq.status)."""
    return (yield Query("queue_overview"))


def orphaned_tasks() -> Operation[Rows]:
    return (yield Query("orphaned_tasks"))


def list_workers() -> Operation[Rows]:
    return (yield Query("list_workers"))


# The worker's side.


def register_worker(
    worker_id: uuid.UUID,
    hostname: str,
    pid: int,
    queues: Sequence[str] | None,
    tasks: Sequence[str],
    concurrency: int,
    lease_seconds: float,
) -> Operation[bool]:
    yield Query(
        "register_worker",
        {
            "worker_id": worker_id,
            "hostname": hostname,
            "pid": pid,
            "queues": list(queues) if queues is not None else None,
            "tasks": list(tasks),
            "concurrency": concurrency,
            "lease_seconds": lease_seconds,
        },
    )
    return True


def heartbeat_worker(
    worker_id: uuid.UUID, lease_seconds: float
) -> Operation[tuple[bool, list[int]]]:
    """Extend the lease; returns (still registered, ids of jobs asked to cancel)."""
    rows = yield Query("heartbeat_worker", {"worker_id": worker_id, "lease_seconds": lease_seconds})
    return bool(rows[0]["alive"]), list(rows[0]["cancel_ids"])


def recover_expired_jobs(abandoned: Sequence[uuid.UUID] = ()) -> Operation[Rows]:
    """Recover the jobs of expired workers, and of the ``abandoned`` identities."""
    return (yield Query("recover_expired_jobs", {"abandoned": list(abandoned)}))


def deregister_worker(worker_id: uuid.UUID) -> Operation[bool]:
    yield Query("deregister_worker", {"worker_id": worker_id})
    return True


def claim_jobs(
    worker_id: uuid.UUID, queues: Sequence[str] | None, tasks: Sequence[str], limit: int
) -> Operation[Rows]:
    params = {"worker_id": worker_id, "tasks": list(tasks), "limit": limit}
    if queues is None:
        return (yield Query("claim_jobs_any_queue", params, prepare=False))
    return (yield Query("claim_jobs", {**params, "queues": list(queues)}, prepare=False))


def next_run_at(queues: Sequence[str] | None, tasks: Sequence[str]) -> Operation[float | None]:
    """Seconds until the next waiting job is due (negative: ready now; None: none)."""
    rows = yield Query(
        "next_run_at",
        {"queues": list(queues) if queues is not None else None, "tasks": list(tasks)},
    )
    return rows[0]["due_in"] if rows else None


def finish_jobs(outcomes: Sequence[Outcome]) -> Operation[set[int]]:
    """Write outcomes; returns the ids actually updated (the others were fenced off)."""
    batch = [
        {
            "id": o.job_id,
            "worker_id": str(o.worker_id),
            "attempts": o.attempts,
            "status": o.status.value,
            "result": o.result,
            "error": o.error,
            "retry_in": o.retry_in,
        }
        for o in outcomes
    ]
    rows = yield Query("finish_jobs", {"outcomes": json.dumps(batch)}, prepare=False)
    return {row["id"] for row in rows}


def release_jobs(worker_id: uuid.UUID, ids: Sequence[int]) -> Operation[list[int]]:
    rows = yield Query("release_jobs", {"worker_id": worker_id, "ids": list(ids)})
    return [row["id"] for row in rows]


def release_unknown_jobs(worker_id: uuid.UUID, known_ids: Sequence[int]) -> Operation[list[int]]:
    rows = yield Query(
        "release_unknown_jobs", {"worker_id": worker_id, "known_ids": list(known_ids)}
    )
    return [row["id"] for row in rows]


def listen() -> Operation[None]:
    yield Query("listen")


def ping() -> Operation[bool]:
    rows = yield Query("ping")
    return bool(rows)


def live_task_names() -> Operation[set[str]]:
    rows = yield Query("live_task_names")
    return {row["task"] for row in rows}


# Periodic schedules.


@dataclass(frozen=True)
class ScheduleRow:
    """What pgq.schedules records of a schedule's definition."""

    name: str
    task: str
    cron: str
    timezone: str


def database_now() -> Operation[datetime]:
    rows = yield Query("database_now")
    now: datetime = rows[0]["now"]
    return now


def register_schedule(schedule: ScheduleRow, baseline: datetime) -> Operation[None]:
    yield Query("register_schedule", {**asdict(schedule), "baseline": baseline})


def enqueue_tick(
    schedule: ScheduleRow, tick: datetime, job: NewJob
) -> Operation[dict[str, Any] | None]:
    """Move the schedule to ``tick`` and enqueue ``job``, unless another worker
    already did: run it in one transaction. Returns the job row, or None."""
    if not (yield Query("claim_schedule_tick", {**asdict(schedule), "tick": tick})):
        return None
    row = yield from insert_job(job)  # with a unique key: maybe the live job that holds it
    yield Query("record_schedule_job", {"name": schedule.name, "job_id": row["id"]})
    return row


def skip_tick(schedule: ScheduleRow, tick: datetime) -> Operation[bool]:
    """Move the schedule to ``tick`` with no job; False if another worker did."""
    return bool((yield Query("claim_schedule_tick", {**asdict(schedule), "tick": tick})))


def list_schedules() -> Operation[Rows]:
    return (yield Query("list_schedules"))


# Retention.


def may_prune() -> Operation[tuple[bool, datetime]]:
    """(whether this role may delete jobs, the database's clock)."""
    rows = yield Query("may_prune")
    return bool(rows[0]["may_delete"]), rows[0]["now"]


def delete_finished_jobs(
    status: str, before: datetime, limit: int, *, exclusive: bool = False
) -> Operation[int | None]:
    """Delete one batch of ``status`` jobs finished before ``before``; returns how
    many, or None if ``exclusive`` and another pruner's batch is running."""
    params = {"status": status, "before": before, "limit": limit, "exclusive": exclusive}
    rows = yield Query("delete_finished_jobs", params)
    return int(rows[0]["deleted"]) if rows[0]["held"] else None


def clear_results(
    after: datetime, before: datetime, limit: int, *, exclusive: bool = False
) -> Operation[tuple[int, datetime | None] | None]:
    """Clear one batch of results; returns how many and the latest finished_at
    cleared, or None if ``exclusive`` and another pruner's batch is running."""
    params = {"after": after, "before": before, "limit": limit, "exclusive": exclusive}
    rows = yield Query("clear_results", params)
    row = rows[0]
    return (int(row["cleared"]), row["last"]) if row["held"] else None


# Queue control and progress.


def set_job_progress(
    job_id: int,
    worker_id: uuid.UUID,
    attempts: int,
    done: float,
    total: float | None,
    message: str | None,
) -> Operation[bool]:
    """Record a running job's progress; False if this holder no longer holds it."""
    params = {
        "id": job_id,
        "worker_id": worker_id,
        "attempts": attempts,
        "done": done,
        "total": total,
        "message": message,
    }
    return bool((yield Query("set_job_progress", params)))


def set_queue_paused(name: str, paused: bool) -> Operation[dict[str, Any]]:
    rows = yield Query("set_queue_paused", {"name": name, "paused": paused})
    if not paused:
        yield Query("notify_queue", {"queue": name})  # idle workers claim at once
    return rows[0]


def set_queue_limits(
    name: str,
    max_running: int | None,
    rate_per_second: float | None,
    *,
    set_max_running: bool,
    set_rate: bool,
) -> Operation[dict[str, Any]]:
    params = {
        "name": name,
        "max_running": max_running,
        "rate_per_second": rate_per_second,
        "set_max_running": set_max_running,
        "set_rate": set_rate,
    }
    rows = yield Query("set_queue_limits", params)
    return rows[0]


def list_queues() -> Operation[Rows]:
    return (yield Query("list_queues"))


def move_jobs(
    from_queue: str, to_queue: str, task: str | None, ids: Sequence[int] | None
) -> Operation[list[int]]:
    """Move waiting jobs of ``from_queue`` to ``to_queue``; returns the ids moved."""
    params = {
        "from_queue": from_queue,
        "to_queue": to_queue,
        "task": task,
        "ids": list(ids) if ids is not None else None,
    }
    rows = yield Query("move_jobs", params)
    return list(rows[0]["ids"])
