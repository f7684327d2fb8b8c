"""Procrastinate and PgQueuer, run from the peers' virtualenv.

Each enqueue step is a driver script (``bench/peers/<peer>_driver.py``) that
prints JSON; workers are the peer's own worker, started as a user would;
counts, timings and history are plain SQL on the peer's tables. Nothing here
imports a peer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict

from .. import ROOT, BenchError, peers_venv
from ..config import BenchConfig
from . import DrainMode, DrainTiming, processes
from .tables import Tables, database_now

PEERS_DIR = ROOT / "bench" / "peers"


def as_url(dsn: str) -> str:
    """``dsn`` as a postgresql:// URL: asyncpg takes no key=value strings."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    params = conninfo_to_dict(dsn)
    user = quote(str(params.pop("user", "")), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    host = str(params.pop("host", ""))
    host = quote(host, safe="") if host.startswith("/") else host
    port = params.pop("port", None)
    dbname = quote(str(params.pop("dbname", "")), safe="")
    query = urlencode({k: str(v) for k, v in params.items()})
    return f"postgresql://{auth}{host}{f':{port}' if port else ''}/{dbname}" + (
        f"?{query}" if query else ""
    )


class PeerAdapter:
    name: str
    driver: str
    tables: Tables
    history_key: str

    def __init__(self, config: BenchConfig):
        self.python = peers_venv.python(config.peers_venv)
        self.bin = self.python.parent

    # Subclasses: the settings and the worker command.

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        raise NotImplementedError

    def serve_mode(self) -> DrainMode:
        raise NotImplementedError

    def worker_command(self, mode: DrainMode, *, burst: bool) -> list[str]:
        raise NotImplementedError

    def task(self, mode: DrainMode) -> str:
        return "async_noop" if mode.asynchronous else "noop"

    # The rest is the same for every peer.

    def _run_driver(self, command: str, dsn: str, **options: Any) -> dict[str, Any]:
        argv = [str(self.python), str(PEERS_DIR / self.driver), command, "--dsn", as_url(dsn)]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=processes.environment(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip().splitlines()[-20:]
            raise BenchError(f"{self.driver} {command} failed:\n" + "\n".join(output))
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return answer

    def install(self, dsn: str) -> None:
        self._run_driver("install", dsn)

    def enqueue_one(self, dsn: str, count: int) -> float:
        return float(self._run_driver("enqueue_one", dsn, count=count)["seconds"])

    def enqueue_bulk(self, dsn: str, count: int, batch: int) -> float:
        return float(self._run_driver("enqueue_bulk", dsn, count=count, batch=batch)["seconds"])

    def fill(self, dsn: str, count: int, batch: int, mode: DrainMode) -> None:
        self._run_driver("fill", dsn, count=count, batch=batch, task=self.task(mode))

    def drain(self, dsn: str, count: int, mode: DrainMode) -> DrainTiming:
        since = database_now(dsn)
        wall, cpu = processes.run_all(
            [self.worker_command(mode, burst=True)] * mode.processes,
            processes.environment({"BENCH_DSN": as_url(dsn)}),
            timeout=max(120.0, count / 20),
        )
        finished, db_seconds = self.tables.drain_timing(dsn, since)
        return DrainTiming(wall, db_seconds, finished, cpu_seconds=cpu)

    def serve(
        self, dsn: str, mode: DrainMode, env: dict[str, str]
    ) -> AbstractContextManager[subprocess.Popen[bytes]]:
        return processes.serving(
            self.worker_command(mode, burst=False),
            processes.environment({"BENCH_DSN": as_url(dsn), **env}),
        )

    def enqueue_paced(self, dsn: str, first: int, count: int, pause: float) -> list[float]:
        answer = self._run_driver("paced", dsn, first=first, count=count, pause=pause)
        return [float(t) for t in answer["commits"]]


def _times(processes: int, label: str) -> str:
    return label if processes == 1 else f"{processes} x {label}"


class ProcrastinateAdapter(PeerAdapter):
    """``procrastinate worker --concurrency C`` (``--one-shot`` for a drain):
    sync tasks run in threads, async ones on its event loop."""

    name = "procrastinate"
    driver = "procrastinate_driver.py"
    tables = Tables("procrastinate_")
    history_key = "procrastinate"

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        if processes > 1:
            return [DrainMode(_times(processes, "c=10"), 10, processes=processes)]
        return [DrainMode("c=10", 10), DrainMode("c=50, async", 50, asynchronous=True)]

    def serve_mode(self) -> DrainMode:
        return DrainMode("c=10", 10)

    def worker_command(self, mode: DrainMode, *, burst: bool) -> list[str]:
        return [
            *(str(self.bin / "procrastinate"), "--app", "bench.peers.procrastinate_app.app"),
            *("--log-level", "warning", "worker", "--concurrency", str(mode.value)),
            "--one-shot" if burst else "--wait",
        ]


class PgQueuerAdapter(PeerAdapter):
    """PgQueuer's worker (``pgqueuer.run``, as ``pgq run`` starts it) on asyncpg,
    ``--batch-size B`` (``--mode drain`` for a drain); entrypoints are async."""

    name = "pgqueuer"
    driver = "pgqueuer_driver.py"
    tables = Tables("pgqueuer_")
    history_key = "pgqueuer"

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        if processes > 1:
            return [DrainMode(_times(processes, "batch=10"), 10, True, processes)]
        return [DrainMode("batch=10", 10, True), DrainMode("batch=100", 100, True)]

    def serve_mode(self) -> DrainMode:
        return DrainMode("batch=10", 10, True)

    def task(self, mode: DrainMode) -> str:
        return "noop"

    def worker_command(self, mode: DrainMode, *, burst: bool) -> list[str]:
        return [
            *(str(self.python), str(PEERS_DIR / "pgqueuer_worker.py")),
            *("--batch-size", str(mode.value), "--mode", "drain" if burst else "continuous"),
        ]


class DjangoTasksDbAdapter(PeerAdapter):
    """django-tasks-db's ``django-admin db_worker`` (``--batch`` for a drain): one
    job at a time per process, polling every ``--interval`` seconds (default 1)
    when idle; no LISTEN/NOTIFY."""

    name = "django-tasks-db"
    driver = "django_tasks_db_driver.py"
    tables = Tables("django_tasks_db_")
    history_key = "django-tasks-db"

    def drain_modes(self, processes: int) -> Sequence[DrainMode]:
        return [DrainMode(_times(processes, "1 at a time"), 1, processes=processes)]

    def serve_mode(self) -> DrainMode:
        return DrainMode("interval=1s (default)", 1)

    def task(self, mode: DrainMode) -> str:
        return "noop"

    def worker_command(self, mode: DrainMode, *, burst: bool) -> list[str]:
        return [
            *(str(self.bin / "django-admin"), "db_worker", "--verbosity", "0"),
            *("--settings", "bench.peers.django_settings", "--no-startup-delay"),
            *(["--batch"] if burst else []),
        ]


__all__ = ["DjangoTasksDbAdapter", "PgQueuerAdapter", "ProcrastinateAdapter"]
