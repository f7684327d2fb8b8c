"""Worker processes, as each system's users start them: run some to the end
(a drain), or keep one serving (latency, memory) and read its resident memory."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from .. import ROOT, BenchError

# Variables that would point a worker at another database or app than the bench's.
_FOREIGN = ("PGQ_DSN", "DATABASE_URL", "PGQ_APP", "PGDSN", "PROCRASTINATE_APP", "PYTHONPATH")


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _FOREIGN}
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT), **(extra or {}))
    return env


def children_cpu() -> float:
    """User + system CPU seconds of the child processes waited for so far
    (their own waited-for children included: a supervisor's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def run_all(
    commands: Sequence[Sequence[str]], env: Mapping[str, str], timeout: float
) -> tuple[float, float]:
    """Start every command at once, wait for all to exit 0; (wall, CPU) seconds."""
    with tempfile.TemporaryDirectory(prefix="pgq-bench-") as tmp:
        logs = [Path(tmp) / f"worker-{n}.log" for n in range(len(commands))]
        cpu_before = children_cpu()
        start = time.perf_counter()
        processes = []
        for command, log in zip(commands, logs, strict=True):
            with open(log, "wb") as output:
                processes.append(
                    subprocess.Popen(
                        command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
                    )
                )
        try:
            for process in processes:
                remaining = max(1.0, timeout - (time.perf_counter() - start))
                process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            raise BenchError(
                f"{Path(commands[0][0]).name} ... did not finish in {timeout:.0f}s:\n"
                + _tail(logs[0])
            ) from None
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        wall = time.perf_counter() - start
        for process, log in zip(processes, logs, strict=True):
            if process.returncode != 0:
                raise BenchError(
                    f"worker exited with {process.returncode}: {' '.join(process.args)}\n"  # type: ignore[arg-type]
                    + _tail(log)
                )
        return wall, children_cpu() - cpu_before


@contextlib.contextmanager
def serving(command: Sequence[str], env: Mapping[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """One worker process running until the block ends (then SIGTERM, then kill)."""
    with tempfile.TemporaryDirectory(prefix="pgq-bench-") as tmp:
        log = Path(tmp) / "worker.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            try:
                yield process
            except BenchError as exc:
                raise BenchError(f"{exc}\nworker output:\n{_tail(log)}") from None
            if process.poll() is not None:
                raise BenchError(f"worker exited early with {process.returncode}:\n{_tail(log)}")
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a live process in kB: resident now, and its peak."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float, interval: float = 0.05
) -> None:
    """Poll ``condition()`` until true; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
