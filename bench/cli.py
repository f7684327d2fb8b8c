"""``python -m bench``: options, then run, print and save."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from . import RESULTS_DIR, BenchError
from .config import DEFAULT_SYSTEMS, QUICK_SIZES, SCENARIOS, SYSTEMS, BenchConfig, Sizes
from .report import format_table, save
from .runner import run


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _int_list_or_none(text: str) -> tuple[int, ...]:
    return () if text.strip().lower() == "none" else _int_list(text)


def _names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="pgq next to Procrastinate, PgQueuer and a hand-written psycopg "
        "ceiling, on one PostgreSQL.",
    )
    p.add_argument(
        "--dsn",
        help="Use this server (role may CREATE DATABASE) instead of "
        "starting a throwaway cluster with fsync on.",
    )
    p.add_argument(
        "--runs", type=int, default=None, help="Runs per case (default 3; 1 with --quick)."
    )
    p.add_argument(
        "--memory-runs",
        type=int,
        default=1,
        help="Runs of the memory scenario (default 1: its jobs take long on slow systems).",
    )
    p.add_argument(
        "--jobs",
        action="append",
        default=[],
        metavar="SCENARIO=N",
        help="Jobs per run of a scenario, or finished jobs of history; repeatable. "
        f"Defaults: {Sizes()}.",
    )
    p.add_argument(
        "--scenario",
        type=_names(SCENARIOS),
        default=SCENARIOS,
        help="Comma-separated scenarios to run (default: all).",
    )
    p.add_argument(
        "--systems",
        type=_names(SYSTEMS),
        default=DEFAULT_SYSTEMS,
        help=f"Comma-separated systems to run, of {', '.join(SYSTEMS)} (default: "
        f"{','.join(DEFAULT_SYSTEMS)}). The peers are installed into bench/.venv-peers "
        "on first use.",
    )
    p.add_argument(
        "--bulk-batch",
        type=int,
        default=10_000,
        help="Jobs per bulk call (default 10000).",
    )
    p.add_argument(
        "--concurrency",
        type=_int_list,
        default=(10, 50),
        help="Worker concurrencies to drain with (default 10,50).",
    )
    p.add_argument(
        "--async-concurrency",
        type=_int_list_or_none,
        default=(200,),
        help="Worker concurrencies to drain an async task with (default 200; 'none' to skip).",
    )
    p.add_argument(
        "--ceiling-batches",
        type=_int_list,
        default=(1, 100),
        help="Claim sizes of the ceiling's drain loop (default 1,100).",
    )
    p.add_argument(
        "--processes",
        type=int,
        default=4,
        help="Worker processes of drain_4proc (default 4).",
    )
    p.add_argument(
        "--latency-pause",
        type=float,
        default=0.02,
        help="Seconds between two enqueues of the latency scenario (default 0.02).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"Tiny sizes {QUICK_SIZES} and one run, to check that it works; "
        "results are only saved with an explicit --output.",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Directory for latest.json/.md/.png (default {RESULTS_DIR}).",
    )
    return p


def config_from_args(argv: Sequence[str] | None = None) -> BenchConfig:
    p = parser()
    args = p.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else Sizes()
    try:
        for override in args.jobs:
            sizes = sizes.with_override(override)
    except ValueError as exc:
        p.error(str(exc))
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if min(runs, args.memory_runs, args.bulk_batch, args.processes) < 1:
        p.error("--runs, --memory-runs, --bulk-batch and --processes must be >= 1")
    if args.latency_pause < 0:
        p.error("--latency-pause must be >= 0")
    output = args.output if args.output or args.quick else RESULTS_DIR
    return replace(
        BenchConfig(),
        runs=runs,
        memory_runs=min(args.memory_runs, runs) if args.quick else args.memory_runs,
        sizes=sizes,
        bulk_batch=args.bulk_batch,
        concurrency=args.concurrency,
        async_concurrency=args.async_concurrency,
        ceiling_batches=args.ceiling_batches,
        processes=args.processes,
        latency_pause=args.latency_pause,
        scenarios=args.scenario,
        systems=args.systems,
        dsn=args.dsn,
        output=output,
        quick=args.quick,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(argv)
    try:
        report = run(config)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    print(format_table(report))
    if config.output is not None:
        for path in save(report, config.output):
            print(f"wrote {path}", file=sys.stderr)
    return 0
