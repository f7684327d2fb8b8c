"""``--processes P``: one supervisor forks P worker processes and restarts any
that dies, until it is told to stop (SIGTERM/SIGINT, passed on as SIGTERM)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

logger = logging.getLogger("pgq.supervisor")

RESTART_DELAY_MAX = 30.0


def _child(target: Callable[[], int]) -> None:
    # Own process group: a terminal's Ctrl-C reaches the supervisor only, which
    # passes one SIGTERM on; each worker then stops gracefully once.
    os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    raise SystemExit(target())


def supervise(target: Callable[[], int], processes: int, *, burst: bool = False) -> int:
    """Run ``target`` (returns an exit code) in ``processes`` forked children.

    A child that dies is restarted (after a growing delay if it keeps dying),
    except in burst mode where a child that exits 0 is done. Returns 0 when
    every child ended with 0 after a stop request or, in burst mode, on its own.
    """
    context = multiprocessing.get_context("fork")
    children: dict[int, BaseProcess] = {}
    failures = dict.fromkeys(range(processes), 0)
    stopping = False
    exit_code = 0

    def start(slot: int) -> None:
        process = context.Process(target=_child, args=(target,), name=f"pgq-worker-{slot}")
        process.start()
        children[slot] = process
        logger.info("started worker process slot=%d pid=%s", slot, process.pid)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            logger.info(
                "%s: stopping %d worker process(es)", signal.Signals(signum).name, len(children)
            )
        stopping = True
        for process in children.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(processes):
            start(slot)
        while children:
            wait([p.sentinel for p in children.values()], timeout=1.0)
            for slot, process in list(children.items()):
                if process.is_alive():
                    continue
                process.join()
                code = process.exitcode
                del children[slot]
                if stopping or (burst and code == 0):
                    exit_code = exit_code or (0 if code == 0 else 1)
                    continue
                failures[slot] += 1
                delay = min(RESTART_DELAY_MAX, 0.5 * 2 ** (failures[slot] - 1))
                logger.error(
                    "worker process slot=%d pid=%s exited with %s; restarting in %.1fs",
                    slot,
                    process.pid,
                    code,
                    delay,
                )
                time.sleep(delay)
                if not stopping:
                    start(slot)
        return exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
