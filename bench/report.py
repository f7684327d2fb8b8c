"""Turning samples into numbers people read: medians, spreads, the best setting
of every system, ratios of pgq to the others, a table for the terminal, and
JSON, Markdown and a chart for ``bench/results/``."""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import RESULTS_DIR
from .adapters import REFERENCE, SUBJECT
from .config import Sizes
from .scenarios import PRIMARY, Case, Sample

NOTES = """\
- **enqueue_one**: one job per transaction (pgq: `task.delay()` on the App's pool;
  Procrastinate: `task.defer()`; PgQueuer: `Queries.enqueue()` with one job; ceiling: one
  autocommit `INSERT`, no NOTIFY).
- **enqueue_bulk**: each library's bulk API, one call (one transaction) per batch shown
  (pgq: `task.delay_many()`, one INSERT of a JSON array; Procrastinate: `task.batch_defer()`;
  PgQueuer: `Queries.enqueue()` with lists; ceiling: raw COPY).
- **drain**: no-op jobs queued beforehand (not timed), then one worker process runs them all
  and exits (pgq `worker --burst`, `procrastinate worker --one-shot`, PgQueuer `--mode drain`).
  Throughput is measured by the database, from the first start to the last completion, with each
  system's own timestamps (pgq `started_at`/`finished_at`, Procrastinate's `procrastinate_events`,
  PgQueuer's `pgqueuer_log`); "wall" is first process start to last exit (interpreter start-up,
  imports and shutdown included). "CPU us/job": CPU (user + system) of the worker processes
  (start-up included) per job; PostgreSQL's own CPU is not in it. "async": an `async def` no-op
  on the worker's event loop, else a plain function in the worker's threads (PgQueuer's
  entrypoints are all async).
  Ceiling: a hand-written psycopg loop in one process on pgq's table: claim N with
  `FOR UPDATE SKIP LOCKED` in one statement, call the no-op, mark the N done in a second.
- **drain_4proc**: the same with 4 worker processes at once (pgq `--processes 4`; 4 processes
  of each peer's worker; 4 ceiling loops).
- **drain_history**: the drain, with finished jobs already in each system's tables, inserted by
  SQL in the shape that system leaves them (pgq: `succeeded` rows in `pgq.jobs`; Procrastinate:
  `succeeded` jobs plus their deferred/started/succeeded events; PgQueuer: queued/picked/successful
  rows in `pgqueuer_log`, finished jobs having left its queue table), then `VACUUM ANALYZE`.
- **latency**: an idle worker (the setting shown), and jobs enqueued one at a time with a pause
  between them; the task writes `time.time()` as its first act, the enqueuer notes `time.time()`
  as soon as its commit returns: latency is the difference (same clock, same machine).
  p50/p95/p99 over the jobs of a run, then the median over runs.
- **memory**: resident memory (`VmRSS` in `/proc/<pid>/status`) of one worker process, idle after
  start-up and one job, then after running the given number of no-op jobs (enqueued in bulk
  while it runs); "peak" is `VmHWM`.
- Every measurement runs in a freshly created database, after VACUUM ANALYZE and CHECKPOINT. Runs
  are interleaved (run 1 of every case, then run 2...). **best** marks each system's best setting
  in a scenario; ratios compare pgq's best with the other system's best: pgq's number over
  theirs, so above 1 is better for throughput and worse for latency and memory.
"""


def _stats(values: Sequence[float]) -> dict[str, Any]:
    median = statistics.median(values)
    return {
        "runs": [round(v, 2) for v in values],
        "median": round(median, 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "spread_pct": round((max(values) - min(values)) / median * 100, 1) if median else None,
    }


def _metric_medians(runs: Sequence[Sample]) -> dict[str, float]:
    names = runs[0].metrics.keys()
    return {name: round(statistics.median(s.metrics[name] for s in runs), 2) for name in names}


def summarize(
    cases: Sequence[Case], samples: Mapping[tuple[str, str, str], list[Sample]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(one result per case, one summary per scenario)."""
    results = []
    for case in cases:
        runs = samples.get(case.key, [])
        if not runs:
            continue
        unit, better = PRIMARY[case.scenario]
        result: dict[str, Any] = {
            "scenario": case.scenario,
            "system": case.system,
            "variant": case.variant,
            "jobs": case.jobs,
            "unit": unit,
            "better": better,
            **_stats([s.primary(case.scenario) for s in runs]),
        }
        if case.scenario in ("latency", "memory"):
            result["metrics"] = _metric_medians(runs)
        else:
            result["seconds"] = [round(s.seconds or 0, 3) for s in runs]
        walls = [s.wall_seconds for s in runs if s.wall_seconds]
        if walls:
            result["wall"] = _stats([case.jobs / w for w in walls])
        cpus = [s.cpu_seconds for s in runs if s.cpu_seconds is not None]
        if cpus:
            result["client_cpu_us_per_job"] = round(statistics.median(cpus) / case.jobs * 1e6, 1)
        results.append(result)
    _mark_best(results)
    return results, _summary(results)


def _is_better(a: dict[str, Any], b: dict[str, Any]) -> bool:
    higher = a["better"] == "higher"
    return bool(a["median"] > b["median"] if higher else a["median"] < b["median"])


def _mark_best(results: list[dict[str, Any]]) -> None:
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        key = (result["scenario"], result["system"])
        if key not in best or _is_better(result, best[key]):
            best[key] = result
    for result in results:
        result["best"] = best[(result["scenario"], result["system"])] is result


def _summary(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        best = {r["system"]: r for r in results if r["scenario"] == scenario and r["best"]}
        entry: dict[str, Any] = {
            "scenario": scenario,
            "unit": PRIMARY[scenario][0],
            "better": PRIMARY[scenario][1],
            "best": {
                system: {k: r[k] for k in ("variant", "median", "min", "max")}
                for system, r in best.items()
            },
            "ratios": {},
        }
        subject = best.get(SUBJECT)
        if subject:
            for system, other in best.items():
                if system != SUBJECT and other["median"]:
                    entry["ratios"][f"{SUBJECT}/{system}"] = round(
                        subject["median"] / other["median"], 3
                    )
        summary.append(entry)
    return summary


def _number(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _digits(result: Mapping[str, Any]) -> int:
    return 0 if result["unit"] == "jobs/s" else 1


def _case_rows(results: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        wall, d = r.get("wall"), _digits(r)
        rows.append(
            [
                r["scenario"],
                r["system"],
                r["variant"],
                f"{r['jobs']:,}",
                r["unit"],
                _number(r["median"], d),
                f"{_number(r['min'], d)}-{_number(r['max'], d)}",
                _number(wall["median"]) if wall and r["unit"] == "jobs/s" else "",
                _number(r.get("client_cpu_us_per_job")),
                "best" if r["best"] else "",
            ]
        )
    return rows


CASE_HEADERS = [
    "scenario",
    "system",
    "variant",
    "jobs",
    "unit",
    "median",
    "min-max",
    "wall jobs/s",
    "CPU us/job",
    "best",
]
CASE_NUMERIC = {3, 5, 6, 7, 8}


def _systems(summary: Sequence[dict[str, Any]]) -> list[str]:
    order = [SUBJECT, REFERENCE]
    seen = dict.fromkeys(s for entry in summary for s in entry["best"])
    return [s for s in order if s in seen] + [s for s in seen if s not in order]


def _summary_table(summary: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    systems = _systems(summary)
    others = [s for s in systems if s != SUBJECT]
    headers = ["scenario", "unit", *systems, *(f"{SUBJECT}/{s}" for s in others)]
    rows = []
    for entry in summary:
        d = 0 if entry["unit"] == "jobs/s" else 1
        cells = [entry["scenario"], entry["unit"]]
        for system in systems:
            best = entry["best"].get(system)
            cells.append(f"{_number(best['median'], d)} ({best['variant']})" if best else "")
        for system in others:
            ratio = entry["ratios"].get(f"{SUBJECT}/{system}")
            cells.append(f"{ratio:.2f}" if ratio is not None else "")
        rows.append(cells)
    return headers, rows


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    table = [list(headers), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in numeric and n else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]
) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def format_table(report: Mapping[str, Any]) -> str:
    headers, rows = _summary_table(report["summary"])
    return "\n\n".join(
        [
            _text_table(headers, rows, set(range(2, len(headers)))),
            _text_table(CASE_HEADERS, _case_rows(report["results"]), CASE_NUMERIC),
        ]
    )


def _latency_memory_rows(results: Sequence[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    latency = [r for r in results if r["scenario"] == "latency"]
    if latency:
        rows = [
            [r["system"], r["variant"], f"{r['jobs']:,}"]
            + [_number(r["metrics"][k], 1) for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
            + [f"{_number(r['min'], 1)}-{_number(r['max'], 1)}"]
            for r in latency
        ]
        headers = [
            "system",
            "worker",
            "jobs",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "p50 min-max",
        ]
        lines += ["", "### Wake latency (commit to task start)", ""]
        lines += _markdown_table(headers, rows, {2, 3, 4, 5, 6, 7})
    memory = [r for r in results if r["scenario"] == "memory"]
    if memory:
        rows = []
        for r in memory:
            m = r["metrics"]
            rows.append(
                [
                    r["system"],
                    r["variant"],
                    f"{r['jobs']:,}",
                    _number(m["idle_mb"], 1),
                    _number(m["after_mb"], 1),
                    _number(m["after_mb"] - m["idle_mb"], 1),
                    _number(m["peak_mb"], 1),
                    str(len(r["runs"])),
                ]
            )
        headers = [
            "system",
            "worker",
            "jobs",
            "idle MB",
            "after MB",
            "growth MB",
            "peak MB",
            "runs",
        ]
        lines += ["", "### Worker resident memory", ""]
        lines += _markdown_table(headers, rows, {2, 3, 4, 5, 6, 7})
    return lines


def _sizes_line(config: Mapping[str, Any]) -> str:
    sizes = config["sizes"]
    reduced = any(sizes[name] < getattr(Sizes(), name) for name in sizes)
    parts = [
        f"{name} {sizes[name]:,}"
        for name in sizes
        if name != "history" and name in config["scenarios"]
    ]
    history = (
        f"; history {sizes['history']:,} finished jobs"
        if "drain_history" in config["scenarios"]
        else ""
    )
    return (
        f"Jobs per run{' (reduced sizes)' if reduced else ''}: {', '.join(parts)}{history}; "
        f"bulk calls of {config['bulk_batch']:,}."
    )


def format_markdown(report: Mapping[str, Any], chart: str | None = None) -> str:
    machine = report["machine"]
    postgres = machine["postgres"]
    config = report["config"]
    peers = machine.get("peers") or {}
    headers, rows = _summary_table(report["summary"])
    lines = [
        "# pgq benchmark",
        "",
        f"{machine['date']} · commit {machine.get('git_commit') or '?'} · "
        f"{machine['cpu_count']} CPU ({machine.get('cpu_model') or 'unknown'}) · "
        f"{machine.get('memory_gb') or '?'} GB · Python {machine['python']} · "
        f"psycopg {machine['psycopg']}"
        + (" · " + ", ".join(f"{k} {v}" for k, v in peers.items()) if peers else ""),
        "",
        f"PostgreSQL {postgres['server_version']} on the same machine"
        f"{' (throwaway cluster)' if postgres.get('throwaway_cluster') else ''}: "
        f"fsync={postgres['fsync']}, synchronous_commit={postgres['synchronous_commit']}, "
        f"wal_sync_method={postgres['wal_sync_method']}, "
        f"shared_buffers={postgres['shared_buffers']}.",
        "",
        _sizes_line(config),
        "",
        f"{config['runs']} run(s) per case ({config['memory_runs']} for memory), interleaved; "
        f"median, with min-max over the runs. Took {report['duration_seconds'] / 60:.0f} min. "
        f"Load average (1, 5, 15 min) before: {machine.get('load_average_before')}, "
        f"after: {machine.get('load_average_after')}.",
        "",
        "## Summary: each system's best setting",
        "",
        *_markdown_table(headers, rows, set(range(2, len(headers)))),
    ]
    if chart:
        lines += ["", f"![benchmark chart]({chart})"]
    lines += ["", "## Every case", ""]
    lines += _markdown_table(CASE_HEADERS, _case_rows(report["results"]), CASE_NUMERIC)
    lines += _latency_memory_rows(report["results"])
    lines += ["", "## What is measured", "", NOTES]
    return "\n".join(lines)


def save(report: Mapping[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (directory / f"latest.{ext}" for ext in ("json", "md", "png"))
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    written = [json_path]
    try:
        from .chart import draw
    except ImportError as exc:  # matplotlib is in the dev extra
        print(f"no chart: {exc}", file=sys.stderr)
        chart = None
    else:
        draw(report, png_path)
        written.append(png_path)
        chart = png_path.name
    md_path.write_text(format_markdown(report, chart), encoding="utf-8")
    return [*written, md_path]


def main(argv: Sequence[str]) -> int:
    """``python -m bench.report [latest.json]``: write the Markdown and the chart
    again from saved results (after a change to this module or to the chart)."""
    path = Path(argv[0]) if argv else RESULTS_DIR / "latest.json"
    for written in save(json.loads(path.read_text(encoding="utf-8")), path.parent):
        print(f"wrote {written}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
