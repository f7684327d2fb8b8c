"""Turning samples into numbers people read: medians, spreads, ratios to the
ceiling, a table for the terminal, JSON and Markdown for ``bench/results/``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .adapters import REFERENCE
from .scenarios import Case, Sample

NOTES = """\
- enqueue_one: `task.delay()` through the App's pool, one transaction per job (ceiling: one
  autocommit INSERT per job, no NOTIFY).
- enqueue_bulk: `task.delay_many()` (COPY) in calls of the batch shown, one transaction per
  call (ceiling: one COPY per batch).
- drain: jobs queued beforehand (not timed); one `pgq worker --burst --concurrency C` process
  runs them all: a sync no-op (in the worker's thread pool), or with "async" an `async def`
  no-op (on its event loop). jobs/s is measured by the database, from the first claim to the last
  completion (`max(finished_at) - min(started_at)`); "wall" is process start to exit
  (interpreter start-up, import, connect, registration and shutdown included). "CPU us/job":
  CPU time (user + system) of the worker process (start-up included), or of the ceiling's
  loop, per job; the PostgreSQL server's CPU is not in it.
  Ceiling: a hand-written psycopg loop in one process: claim N with FOR UPDATE SKIP LOCKED in
  one statement, call the no-op, mark the N done in a second statement.
- Every measurement runs in a freshly created and migrated database, after VACUUM ANALYZE and
  CHECKPOINT. Runs are interleaved (run 1 of every case, then run 2...).
- "vs ceiling": pgq's median / the best ceiling median of the same scenario.
"""


def _rate_stats(rates: Sequence[float]) -> dict[str, Any]:
    median = statistics.median(rates)
    return {
        "runs": [round(r, 1) for r in rates],
        "median": round(median, 1),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "spread_pct": round((max(rates) - min(rates)) / median * 100, 1) if median else None,
    }


def summarize(
    cases: Sequence[Case], samples: Mapping[tuple[str, str, str], list[Sample]]
) -> list[dict[str, Any]]:
    results = []
    for case in cases:
        runs = samples.get(case.key, [])
        if not runs:
            continue
        result: dict[str, Any] = {
            "scenario": case.scenario,
            "system": case.system,
            "variant": case.variant,
            "jobs": case.jobs,
            "unit": "jobs/s",
            **_rate_stats([s.jobs / s.seconds for s in runs]),
            "seconds": [round(s.seconds, 3) for s in runs],
        }
        walls = [s.wall_seconds for s in runs if s.wall_seconds]
        if walls:
            result["wall"] = _rate_stats([case.jobs / w for w in walls])
        cpus = [s.cpu_seconds for s in runs if s.cpu_seconds is not None]
        if cpus:
            result["client_cpu_us_per_job"] = round(statistics.median(cpus) / case.jobs * 1e6, 1)
        results.append(result)
    _add_ratios(results)
    return results


def _add_ratios(results: list[dict[str, Any]]) -> None:
    for result in results:
        if result["system"] == REFERENCE:
            continue
        ceilings = [
            r for r in results if r["system"] == REFERENCE and r["scenario"] == result["scenario"]
        ]
        if not ceilings:
            continue
        result["ratios"] = {
            c["variant"]: round(result["median"] / c["median"], 3) for c in ceilings
        }
        best = max(ceilings, key=lambda c: c["median"])
        result["ratio"] = result["ratios"][best["variant"]]
        result["ratio_to"] = f"{REFERENCE} {best['variant']}"


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def _rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        wall = r.get("wall")
        rows.append(
            [
                r["scenario"],
                r["system"],
                r["variant"],
                f"{r['jobs']:,}",
                _number(r["median"]),
                f"{_number(r['min'])}-{_number(r['max'])}",
                _number(wall["median"]) if wall else "",
                _number(r.get("client_cpu_us_per_job")),
                f"{r['ratio']:.2f}" if "ratio" in r else "",
            ]
        )
    return rows


HEADERS = [
    "scenario",
    "system",
    "variant",
    "jobs",
    "jobs/s (median)",
    "min-max",
    "wall jobs/s",
    "CPU us/job",
    "vs ceiling",
]
NUMERIC = {3, 4, 5, 6, 7, 8}


def format_table(results: Sequence[dict[str, Any]]) -> str:
    rows = [HEADERS, *_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(widths[i]) if i in NUMERIC and n else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(report: Mapping[str, Any]) -> str:
    machine = report["machine"]
    postgres = machine["postgres"]
    config = report["config"]
    lines = [
        "# pgq benchmark",
        "",
        f"{machine['date']} · commit {machine.get('git_commit') or '?'} · "
        f"{machine['cpu_count']} CPU ({machine.get('cpu_model') or 'unknown'}) · "
        f"{machine.get('memory_gb') or '?'} GB · Python {machine['python']} · "
        f"psycopg {machine['psycopg']}",
        "",
        f"PostgreSQL {postgres['server_version']} on the same machine"
        f"{' (throwaway cluster)' if postgres.get('throwaway_cluster') else ''}: "
        f"fsync={postgres['fsync']}, synchronous_commit={postgres['synchronous_commit']}, "
        f"wal_sync_method={postgres['wal_sync_method']}, "
        f"shared_buffers={postgres['shared_buffers']}.",
        "",
        f"{config['runs']} run(s) per case; median, with min-max over the runs. "
        f"Load average (1, 5, 15 min) before: {machine.get('load_average_before')}, "
        f"after: {machine.get('load_average_after')}.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---:" if i in NUMERIC else "---" for i in range(len(HEADERS))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(report["results"])]
    lines += ["", "## What is measured", "", NOTES]
    return "\n".join(lines)


def save(report: Mapping[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    md_path.write_text(format_markdown(report), encoding="utf-8")
    return [json_path, md_path]
