"""before_task / after_task / on_failure, run by a real worker around real jobs:
where they run, what they are told, and that a broken hook changes nothing."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pgq
from pgq.exceptions import InvalidOptions
from tests import hook_tasks


@pytest.fixture
def hook_app(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pgq.App]:
    monkeypatch.setenv("PGQ_TEST_HOOK_LOG", str(tmp_path / "hooks.jsonl"))
    hook_tasks.app.configure(dsn=dsn)
    yield hook_tasks.app
    hook_tasks.app.close()
    hook_tasks.app.configure(dsn=None)


def events(job: pgq.Job) -> list[dict[str, Any]]:
    with open(os.environ["PGQ_TEST_HOOK_LOG"]) as log:
        lines = [json.loads(line) for line in log]
    return [line for line in lines if line["job"] == job.id]


def summary(job: pgq.Job) -> list[tuple[Any, ...]]:
    return [
        (e["event"], e["attempt"], e.get("status"), e.get("exc"), e["marker"]) for e in events(job)
    ]


@pytest.mark.parametrize("task_name", ["seen", "aseen"])
def test_success__before_and_after_around_the_task_in_its_context(
    hook_app: pgq.App, task_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    job = hook_app.get_task(task_name).delay()

    with caplog.at_level(logging.ERROR, logger="pgq.hooks"):
        hook_app.run_worker(burst=True)

    job.refresh()
    marker = f"job-{job.id}"
    assert job.status is pgq.JobStatus.SUCCEEDED  # the broken hooks changed nothing
    assert job.result["marker"] == marker  # the task saw what before_task set
    assert summary(job) == [
        ("before", 1, None, None, marker),
        ("after", 1, "succeeded", None, marker),
    ]
    if task_name == "seen":  # a sync task's hooks run in its thread
        assert {e["thread"] for e in events(job)} == {job.result["thread"]}
    broken = [r for r in caplog.records if "hook" in r.getMessage() and "failed" in r.getMessage()]
    assert len(broken) == 2  # the broken before and after hooks, logged and ignored
    assert all(r.exc_info and "a broken hook" in str(r.exc_info[1]) for r in broken)


@pytest.mark.parametrize("task_name", ["flaky", "aflaky"])
def test_failure__on_failure_gets_the_exception_and_the_verdict_of_each_attempt(
    hook_app: pgq.App, task_name: str
) -> None:
    job = hook_app.get_task(task_name).delay()

    hook_app.run_worker(burst=True)

    assert job.refresh().status is pgq.JobStatus.FAILED
    assert job.attempts == 2
    assert summary(job) == [
        ("before", 1, None, None, f"job-{job.id}"),
        ("failure", 1, "queued", "ValueError", f"job-{job.id}"),  # will be retried
        ("after", 1, "queued", "ValueError", f"job-{job.id}"),
        ("before", 2, None, None, f"job-{job.id}"),
        ("failure", 2, "failed", "ValueError", f"job-{job.id}"),  # final
        ("after", 2, "failed", "ValueError", f"job-{job.id}"),
    ]


@pytest.mark.slow
def test_process_isolation__hooks_run_in_the_job_process(hook_app: pgq.App) -> None:
    ok = hook_app.get_task("seen").delay()
    failing = hook_app.get_task("flaky").delay()

    hook_app.run_worker(burst=True, isolation="process", concurrency=1)

    assert ok.refresh().status is pgq.JobStatus.SUCCEEDED
    assert failing.refresh().status is pgq.JobStatus.FAILED
    assert [e[0] for e in summary(ok)] == ["before", "after"]
    assert [e[2] for e in summary(failing) if e[0] == "failure"] == ["queued", "failed"]
    pids = {e["pid"] for e in events(ok) + events(failing)}
    assert os.getpid() not in pids
    assert ok.result["pid"] in pids
    assert ok.result["marker"] == f"job-{ok.id}"


def test_hook_must_be_callable(hook_app: pgq.App) -> None:
    with pytest.raises(InvalidOptions, match="a hook must be callable"):
        hook_app.before_task("not a function")  # type: ignore[arg-type]
