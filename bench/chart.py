"""The chart of ``bench/results/latest.png``: every system's best setting per
scenario (throughput on a log scale, with min-max whiskers), wake latency
percentiles and worker memory. Needs matplotlib (the ``dev`` extra)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .adapters import REFERENCE, SUBJECT
from .scenarios import THROUGHPUT

COLORS = {
    SUBJECT: "#2b6cb0",
    REFERENCE: "#9e9e9e",
    "procrastinate": "#dd6b20",
    "pgqueuer": "#38a169",
    "django-tasks-db": "#805ad5",
}


def _systems(results: Sequence[Mapping[str, Any]]) -> list[str]:
    present = dict.fromkeys(r["system"] for r in results)
    order = [SUBJECT, REFERENCE, "procrastinate", "pgqueuer", "django-tasks-db"]
    return [s for s in order if s in present] + [s for s in present if s not in order]


def _bars(
    axes: Axes,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    errors: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
    colors: Mapping[str, str] | None = None,
) -> None:
    width = 0.8 / max(1, len(series))
    for n, (name, values) in enumerate(series.items()):
        xs = [g + (n - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v or 0 for v in values]
        bars = axes.bar(xs, heights, width, label=name, color=(colors or {}).get(name))
        if errors:
            spans = errors[name]
            low = [h - s[0] if s else 0 for h, s in zip(heights, spans, strict=True)]
            high = [s[1] - h if s else 0 for h, s in zip(heights, spans, strict=True)]
            axes.errorbar(xs, heights, yerr=[low, high], fmt="none", ecolor="black", lw=0.8)
        for bar, value in zip(bars, values, strict=True):
            if value:
                axes.annotate(
                    f"{value:,.0f}" if value >= 100 else f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=6,
                    rotation=90,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
    axes.set_xticks(range(len(groups)), groups)


def draw(report: Mapping[str, Any], path: Path) -> None:
    results = [r for r in report["results"] if r["best"]]
    systems = _systems(results)
    best = {(r["scenario"], r["system"]): r for r in results}
    figure = plt.figure(figsize=(12, 8), layout="constrained")
    grid = figure.add_gridspec(2, 2, height_ratios=[3, 2])
    throughput = figure.add_subplot(grid[0, :])
    scenarios = [s for s in THROUGHPUT if any(k[0] == s for k in best)]
    if scenarios:
        series = {
            s: [best[(sc, s)]["median"] if (sc, s) in best else None for sc in scenarios]
            for s in systems
        }
        spans = {
            s: [
                (best[(sc, s)]["min"], best[(sc, s)]["max"]) if (sc, s) in best else None
                for sc in scenarios
            ]
            for s in systems
        }
        _bars(throughput, scenarios, series, spans, COLORS)
        throughput.set_yscale("log")
        bottom, top = throughput.get_ylim()
        throughput.set_ylim(bottom, top * 3)  # room for the labels
        throughput.set_ylabel("jobs/s (log scale)")
        throughput.set_title("Throughput, each system's best setting (median, min-max)")
        throughput.legend(loc="upper right", fontsize=8)
        throughput.grid(axis="y", which="both", alpha=0.3)
    panels = [
        ("latency", ("p50_ms", "p95_ms", "p99_ms"), "ms", "Wake latency, commit to task start"),
        ("memory", ("idle_mb", "after_mb"), "MB", "Worker RSS: idle, after the jobs"),
    ]
    for column, (scenario, metrics, unit, title) in enumerate(panels):
        axes = figure.add_subplot(grid[1, column])
        names = [s for s in systems if (scenario, s) in best]
        axes.set_title(title)
        if not names:
            axes.set_axis_off()
            continue
        series = {
            m.split("_")[0]: [best[(scenario, s)]["metrics"][m] for s in names] for m in metrics
        }
        _bars(axes, names, series)
        axes.set_ylim(0, axes.get_ylim()[1] * 1.2)  # room for the labels
        axes.set_ylabel(unit)
        axes.legend(fontsize=8)
        axes.grid(axis="y", alpha=0.3)
    machine = report["machine"]
    figure.suptitle(
        f"pgq benchmark · {machine['date'][:10]} · {machine['cpu_count']} CPU · "
        f"PostgreSQL {machine['postgres']['server_version'].split()[0]}",
        fontsize=11,
    )
    figure.savefig(path, dpi=110)
    plt.close(figure)
