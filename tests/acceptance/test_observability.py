"""A real worker's Prometheus endpoint (--metrics-port) and its JSON log
(--log-format json)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import pgq
from tests import hook_tasks, tasks
from tests.conftest import ROOT, pgq_command, subprocess_env, wait_until


def free_port(count: int = 1) -> int:
    """A port with ``count - 1`` free ports after it."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + count > 65535:
            continue
        try:
            for extra in range(1, count):
                with socket.socket() as other:
                    other.bind(("127.0.0.1", port + extra))
        except OSError:
            continue
        return port


def scrape(port: int) -> dict[str, float]:
    """Samples of /metrics as {'name{labels}': value}; {} while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.mark.slow
def test_metrics__counters_histogram_and_gauges_of_a_real_worker(
    app: pgq.App, spawn_worker: Any
) -> None:
    port = free_port()
    for i in range(3):
        tasks.add.delay(i, i)
    tasks.fail_now.delay()
    worker = spawn_worker("--concurrency", "4", "--metrics-port", str(port))

    def finished() -> dict[str, float] | None:
        samples = scrape(port)
        done = samples.get('pgq_jobs_finished_total{status="succeeded",task="add"}')
        failed = 'pgq_jobs_finished_total{status="failed",task="fail_now"}' in samples
        # An outcome batch is counted once its write is done, after its jobs.
        written = samples.get("pgq_outcome_batch_size_sum", 0) >= 4
        return samples if done == 3 and failed and written else None

    samples = wait_until(finished, timeout=30)
    assert samples['pgq_jobs_finished_total{status="failed",task="fail_now"}'] == 1
    assert samples['pgq_job_duration_seconds_count{task="add"}'] == 3
    assert samples['pgq_job_duration_seconds_bucket{le="+Inf",task="add"}'] == 3
    assert samples["pgq_worker_concurrency"] == 4
    assert samples["pgq_jobs_running"] + samples["pgq_worker_free_slots"] == 4
    assert samples["pgq_claim_batch_size_sum"] >= 4
    assert samples["pgq_outcome_batch_size_sum"] >= 4
    worker.terminate()
    assert worker.wait(timeout=30) == 0
    assert scrape(port) == {}  # the endpoint goes with the worker


@pytest.mark.slow
def test_metrics__each_of_several_processes_serves_its_own_port(
    app: pgq.App, spawn_worker: Any
) -> None:
    port = free_port(2)
    worker = spawn_worker("--processes", "2", "--metrics-port", str(port))

    wait_until(lambda: scrape(port) and scrape(port + 1), timeout=30)
    worker.terminate()
    assert worker.wait(timeout=30) == 0


def test_metrics__port_in_use_is_a_one_line_error(app: pgq.App, spawn_worker: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = spawn_worker("--burst", "--metrics-port", str(port))
        assert worker.wait(timeout=30) == 1
    lines = worker.log_path.read_text().strip().splitlines()
    assert lines[-1].startswith(f"pgq: error: cannot serve metrics on port {port}: "), lines


def test_metrics__without_prometheus_client_a_one_line_error(dsn: str) -> None:
    # The package made unimportable, as on an install without the extra.
    argv = ["--dsn", dsn, "worker", "--app", "tests.tasks:app", "--metrics-port", "9999"]
    code = (
        "import sys; sys.modules['prometheus_client'] = None; from pgq.cli import main; "
        f"sys.exit(main({argv!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=subprocess_env(dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "pgq: error: --metrics-port needs the prometheus-client package: "
        "pip install 'pgq-jobs[metrics]'"
    )


def test_log_format_json__job_fields_on_job_lines_and_in_task_logs(
    dsn: str, tmp_path: Path
) -> None:
    hook_tasks.app.configure(dsn=dsn)
    try:
        ok = hook_tasks.chatty.delay()
        failing = hook_tasks.flaky.delay()
    finally:
        hook_tasks.app.close()
        hook_tasks.app.configure(dsn=None)
    env = {**subprocess_env(dsn), "PGQ_TEST_HOOK_LOG": str(tmp_path / "hooks.jsonl")}
    done = subprocess.run(
        pgq_command(
            dsn,
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "worker",
            "--app",
            "tests.hook_tasks:app",
            "--burst",
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    finished = {
        (e["job_id"], e["attempt"]): e
        for e in entries
        if e["logger"] == "pgq.worker" and "duration_ms" in e
    }
    assert finished[ok.id, 1]["status"] == "succeeded"
    assert finished[ok.id, 1]["task"] == "chatty"
    assert [finished[failing.id, a]["status"] for a in (1, 2)] == ["queued", "failed"]
    assert all(isinstance(e["duration_ms"], float) for e in finished.values())
    [said] = [e for e in entries if e["logger"] == "tests.chatty"]
    assert (said["message"], said["job_id"], said["task"], said["attempt"]) == (
        "said inside the task",
        ok.id,
        "chatty",
        1,
    )
    broken = [e for e in entries if e["logger"] == "pgq.hooks"]
    assert broken and all("RuntimeError: a broken hook" in e["exception"] for e in broken)
    assert os.path.exists(tmp_path / "hooks.jsonl")
