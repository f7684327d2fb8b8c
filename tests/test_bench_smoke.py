"""The benchmark still runs: every scenario, tiny sizes, one run, pgq and the
ceiling on the test server. Nothing here looks at speed; it only checks that
the numbers exist. The peers (installed in their own virtualenv by the bench)
are not run here: their adapters, driver scripts and reports are checked
without them."""

from __future__ import annotations

import json
import py_compile
from dataclasses import replace
from pathlib import Path

import pytest

from bench.adapters import ADAPTERS, DrainMode
from bench.adapters.peers import PEERS_DIR, as_url
from bench.cli import config_from_args, main
from bench.report import format_markdown, summarize
from bench.scenarios import Sample, build_cases


@pytest.mark.slow
def test_bench_quick__runs_every_scenario_and_writes_results(
    server_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("--quick", "--dsn", server_dsn, "--output", str(tmp_path)),
            *("--systems", "pgq,ceiling", "--concurrency", "10", "--async-concurrency", "none"),
            *("--ceiling-batches", "100", "--processes", "2"),
        ]
    )

    assert code == 0
    report = json.loads((tmp_path / "latest.json").read_text())
    cases = {(r["scenario"], r["system"], r["variant"]) for r in report["results"]}
    assert cases == {
        ("enqueue_one", "pgq", "1 job/transaction"),
        ("enqueue_one", "ceiling", "1 job/transaction"),
        ("enqueue_bulk", "pgq", "300/call"),
        ("enqueue_bulk", "ceiling", "300/call"),
        ("drain", "pgq", "c=10"),
        ("drain", "ceiling", "loop, batch=100"),
        ("drain_4proc", "pgq", "2 x c=10"),
        ("drain_4proc", "ceiling", "2 x loop, batch=100"),
        ("latency", "pgq", "c=10"),
        ("drain_history", "pgq", "c=10"),
        ("drain_history", "ceiling", "loop, batch=100"),
        ("memory", "pgq", "c=10"),
    }
    for result in report["results"]:
        assert len(result["runs"]) == 1 and result["median"] > 0 and result["best"]
    latency = next(r for r in report["results"] if r["scenario"] == "latency")
    assert 0 < latency["metrics"]["p50_ms"] <= latency["metrics"]["p99_ms"]
    memory = next(r for r in report["results"] if r["scenario"] == "memory")
    assert memory["metrics"]["idle_mb"] > 0 and memory["metrics"]["after_mb"] > 0
    ratios = {s["scenario"]: s["ratios"] for s in report["summary"]}
    assert ratios["drain"]["pgq/ceiling"] > 0 and ratios["latency"] == {}
    assert report["machine"]["postgres"]["server_version"]
    markdown = (tmp_path / "latest.md").read_text()
    assert "| drain | pgq | c=10 |" in markdown and "![benchmark chart](latest.png)" in markdown
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG")
    assert "pgq/ceiling" in capsys.readouterr().out


def test_bench_peers__cases_and_commands_build_without_the_peers_installed(
    tmp_path: Path,
) -> None:
    config = config_from_args(["--quick"])
    config = replace(config, peers_venv=tmp_path / "venv")
    adapters = [ADAPTERS[name](config) for name in ADAPTERS]

    cases = build_cases(config, adapters)

    systems = {(c.scenario, c.system) for c in cases}
    assert ("drain_4proc", "procrastinate") in systems and ("memory", "pgqueuer") in systems
    assert ("latency", "ceiling") not in systems  # no long-running worker to wake
    peers = {a.name: a for a in adapters}
    procrastinate, pgqueuer = peers["procrastinate"], peers["pgqueuer"]
    command = procrastinate.worker_command(DrainMode("c=10", 10), burst=True)  # type: ignore[attr-defined]
    assert command[0] == str(tmp_path / "venv" / "bin" / "procrastinate")
    assert command[-3:] == ["--concurrency", "10", "--one-shot"]
    command = pgqueuer.worker_command(DrainMode("batch=100", 100, True), burst=False)  # type: ignore[attr-defined]
    assert command[0] == str(tmp_path / "venv" / "bin" / "python")
    assert command[-4:] == ["--batch-size", "100", "--mode", "continuous"]
    command = peers["django-tasks-db"].worker_command(DrainMode("one", 1), burst=True)  # type: ignore[attr-defined]
    assert command[:2] == [str(tmp_path / "venv" / "bin" / "django-admin"), "db_worker"]
    assert command[-1] == "--batch"


def test_bench_peers__driver_scripts_compile() -> None:
    scripts = sorted(PEERS_DIR.glob("*.py"))

    assert {s.name for s in scripts} >= {
        "procrastinate_driver.py",
        "pgqueuer_driver.py",
        "django_tasks_db_driver.py",
    }
    for script in scripts:
        py_compile.compile(str(script), doraise=True, cfile=None)


def test_bench_peers__asyncpg_gets_a_url() -> None:
    assert (
        as_url("host=127.0.0.1 port=5432 user=pgq dbname=x") == "postgresql://pgq@127.0.0.1:5432/x"
    )
    assert as_url("postgresql://a@b/c") == "postgresql://a@b/c"


def test_bench_report__ratios_compare_each_system_best_setting() -> None:
    settings = ["--concurrency", "10,50", "--async-concurrency", "50"]  # not the defaults
    config = config_from_args(["--quick", "--scenario", "drain,latency", *settings])
    config = replace(config, peers_venv=Path("/nonexistent"))
    adapters = [ADAPTERS[name](config) for name in ("pgq", "procrastinate")]
    cases = build_cases(config, adapters)
    rates = {
        ("pgq", "c=10"): 100.0,
        ("pgq", "c=50"): 300.0,
        ("pgq", "c=50, async"): 200.0,
        ("procrastinate", "c=10"): 50.0,
        ("procrastinate", "c=50, async"): 40.0,
    }
    samples = {}
    for case in cases:
        if case.scenario == "drain":
            rate = rates[(case.system, case.variant)]
            samples[case.key] = [Sample(100, 100 / rate), Sample(100, 100 / rate)]
        else:
            p50 = 2.0 if case.system == "pgq" else 4.0
            metrics = {"p50_ms": p50, "p95_ms": 5.0, "p99_ms": 6.0, "max_ms": 7.0, "mean_ms": 3}
            samples[case.key] = [Sample(5, metrics=metrics)]

    results, summary = summarize(cases, samples)

    best = {(r["system"], r["variant"]) for r in results if r["best"] and r["scenario"] == "drain"}
    assert best == {("pgq", "c=50"), ("procrastinate", "c=10")}
    by_scenario = {s["scenario"]: s for s in summary}
    # pgq's best (300/s) over procrastinate's best (50/s).
    assert by_scenario["drain"]["ratios"] == {"pgq/procrastinate": 6.0}
    assert by_scenario["latency"]["ratios"] == {"pgq/procrastinate": 0.5}
    report = {
        "machine": {
            "date": "2026-01-01T00:00:00",
            "cpu_count": 2,
            "python": "3",
            "psycopg": "3",
            "postgres": {
                k: "x"
                for k in (
                    "server_version",
                    "fsync",
                    "synchronous_commit",
                    "wal_sync_method",
                    "shared_buffers",
                )
            },
        },
        "config": config.as_dict(),
        "duration_seconds": 60,
        "results": results,
        "summary": summary,
    }
    markdown = format_markdown(report)
    assert "| drain | jobs/s | 300 (c=50) | 50 (c=10) | 6.00 |" in markdown
    assert "### Wake latency" in markdown


def test_bench_options__quick_does_not_overwrite_the_committed_results() -> None:
    config = config_from_args(["--quick", "--jobs", "drain=7", "--scenario", "drain,enqueue_one"])

    assert config.output is None
    assert config.runs == 1
    assert config.sizes.drain == 7
    assert config.scenarios == ("drain", "enqueue_one")


def test_bench_options__history_size_is_an_override() -> None:
    config = config_from_args(["--jobs", "history=5000", "--jobs", "drain_history=50"])

    assert (config.sizes.history, config.sizes.drain_history) == (5000, 50)
    assert config.systems == ("pgq", "ceiling", "procrastinate", "pgqueuer")


@pytest.mark.parametrize(
    "argv", [["--scenario", "nope"], ["--systems", "celery"], ["--jobs", "drain=0"]]
)
def test_bench_options__bad_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(argv)

    assert exit_info.value.code == 2
