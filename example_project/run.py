#!/usr/bin/env python
"""Run the example site and everything it needs, with one command:

    python example_project/run.py            # until Ctrl-C
    python example_project/run.py --smoke    # check it end to end, then exit (0: it works)

1. PostgreSQL: ``DATABASE_URL`` when set, else a throwaway server
   (``pgq.tempdb``) that is deleted on exit;
2. ``migrate``: Django's tables, the reports app, pgq's schema;
3. an admin user ``admin`` with password ``admin`` (if there is none);
4. ``manage.py runserver`` and ``manage.py pgq_worker`` side by side; Ctrl-C
   stops both (the worker finishes its running jobs first), then the database.

``--smoke`` then submits the "make a report" form over HTTP, waits for the
summary job to succeed and the publish job to fail, retries that one from the
admin's failed jobs, waits for it to succeed, and stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ADMIN_USER = ADMIN_PASSWORD = "admin"
SETTINGS = "example_project.settings"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0  # the worker's shutdown grace (30 s) and some


class ExampleError(Exception):
    """Something the user has to fix; shown as one line."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="the site's port (default 8000; --smoke: any)")
    parser.add_argument("--smoke", action="store_true", help="check it end to end, then exit")
    args = parser.parse_args(argv)
    port = args.port or (free_port() if args.smoke else 8000)
    # Ctrl-C and SIGTERM stop everything, even when started with SIGINT ignored
    # (a background job of a script).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with database() as description:
            prepare()
            with services(port, reload=not args.smoke) as processes:
                base_url = f"http://127.0.0.1:{port}"
                wait_for_site(base_url, processes["server"])
                banner(base_url, description, processes)
                if args.smoke:
                    import smoke

                    return smoke.run(base_url, ADMIN_USER, ADMIN_PASSWORD)
                return watch(processes)
    except KeyboardInterrupt:
        print("\nstopped.", flush=True)
        return 0
    except ExampleError as exc:
        print(f"example: error: {exc}", file=sys.stderr, flush=True)
        return 1


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def database() -> Iterator[str]:
    """Set ``DATABASE_URL`` (starting a throwaway PostgreSQL if it is not set);
    yields a description for the banner."""
    if os.environ.get("DATABASE_URL"):
        yield "DATABASE_URL"
        return
    import psycopg

    from pgq.exceptions import PgqError
    from pgq.tempdb import TemporaryPostgres

    print("starting a throwaway PostgreSQL...", flush=True)
    server = TemporaryPostgres(fsync=False)
    try:
        server.start()
    except PgqError as exc:
        raise ExampleError(f"{exc} (or set DATABASE_URL)") from None
    try:
        # The site connects as an ordinary role owning its database, as in production.
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE example LOGIN")
            conn.execute("CREATE DATABASE example OWNER example")
        os.environ["DATABASE_URL"] = f"postgresql://example@127.0.0.1:{server.port}/example"
        yield f"throwaway PostgreSQL on 127.0.0.1:{server.port} (deleted on exit)"
    finally:
        os.environ.pop("DATABASE_URL", None)
        server.stop()


def prepare() -> None:
    """Migrate and create the admin user, in this process (Django set up here
    is also what --smoke uses to watch the jobs)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=1)
    users = get_user_model()._default_manager
    if not users.filter(username=ADMIN_USER).exists():
        users.create_superuser(ADMIN_USER, "admin@example.com", ADMIN_PASSWORD)  # type: ignore[attr-defined]
    connections.close_all()


@contextlib.contextmanager
def services(port: int, *, reload: bool) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The development server and a worker; both stopped on the way out."""
    server_args = [f"127.0.0.1:{port}"] if reload else [f"127.0.0.1:{port}", "--noreload"]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        processes["server"] = manage("runserver", *server_args)
        processes["worker"] = manage("pgq_worker", "--concurrency", "4")
        yield processes
    finally:
        for name in ("worker", "server"):
            if name in processes:
                stop(processes[name])


def manage(*args: str) -> subprocess.Popen[bytes]:
    """``manage.py ARGS`` in a process group of its own, so that stopping it
    reaches every process it starts (runserver's reloader runs the server in
    a child)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(HERE / "manage.py"), *args],
        cwd=HERE,
        env=env,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group (the worker then finishes its running
    jobs), SIGKILL if it is still there after STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for_site(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        if server.poll() is not None:
            raise ExampleError(f"the development server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/admin/login/", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise ExampleError(f"the site did not answer at {base_url} within {STARTUP_TIMEOUT}s")
        time.sleep(0.2)


def banner(base_url: str, database: str, processes: dict[str, subprocess.Popen[bytes]]) -> None:
    print(
        "\npgq example project\n"
        f"  site      {base_url}/           make a report here\n"
        f"  admin     {base_url}/admin/     user {ADMIN_USER}, password {ADMIN_PASSWORD}\n"
        f"  database  {database}\n"
        f"  worker    manage.py pgq_worker (pid {processes['worker'].pid})\n"
        "Press Ctrl-C to stop.\n",
        flush=True,
    )


def watch(processes: dict[str, subprocess.Popen[bytes]]) -> int:
    """Block until Ctrl-C, or until a process dies (then stop the rest)."""
    while True:
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"the {name} exited with status {process.returncode}; stopping")
                return 1
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
