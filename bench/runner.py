"""Running every case its number of times, interleaved, and assembling the report."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from . import peers_venv
from .adapters import ADAPTERS, PEERS
from .config import BenchConfig
from .report import summarize
from .scenarios import Sample, build_cases
from .server import machine_info, open_server


def run(config: BenchConfig, progress: TextIO = sys.stderr) -> dict[str, Any]:
    """Run the benchmark described by ``config``; returns the report (see report.py)."""
    peers: dict[str, str] = {}
    if any(system in PEERS for system in config.systems):
        peers_venv.ensure(config.peers_venv)
        peers = peers_venv.versions(config.peers_venv)
    adapters = [ADAPTERS[name](config) for name in config.systems]
    cases = build_cases(config, adapters)
    samples: dict[tuple[str, str, str], list[Sample]] = {}
    started = time.perf_counter()
    load_before = _load_average()
    with open_server(config.dsn) as server:
        machine = machine_info(server, throwaway=config.dsn is None)
        for run_number in range(1, max((c.runs for c in cases), default=0) + 1):
            for case in cases:
                if run_number > case.runs:
                    continue
                sample = case.measure(server)
                samples.setdefault(case.key, []).append(sample)
                print(
                    f"run {run_number}/{case.runs}  {case.scenario:<13} {case.system:<13} "
                    f"{case.variant:<22} {sample.describe(case.scenario)}",
                    file=progress,
                    flush=True,
                )
    # Other work on the machine skews the numbers: the load average tells a reader how much.
    machine["load_average_before"], machine["load_average_after"] = load_before, _load_average()
    machine["peers"] = peers
    results, summary = summarize(cases, samples)
    return {
        "machine": machine,
        "config": config.as_dict(),
        "duration_seconds": round(time.perf_counter() - started, 1),
        "results": results,
        "summary": summary,
    }


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None
