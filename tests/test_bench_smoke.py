"""The benchmark still runs: every scenario, tiny sizes, one run, on the test
server. Nothing here looks at speed; it only checks that the numbers exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cli import config_from_args, main


@pytest.mark.slow
def test_bench_quick__runs_every_scenario_and_writes_results(
    server_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--quick", "--dsn", server_dsn, "--output", str(tmp_path)])

    assert code == 0
    report = json.loads((tmp_path / "latest.json").read_text())
    cases = {(r["scenario"], r["system"], r["variant"]) for r in report["results"]}
    assert cases == {
        ("enqueue_one", "pgq", "1 job/transaction"),
        ("enqueue_one", "ceiling", "1 job/transaction"),
        ("enqueue_bulk", "pgq", "300/call"),
        ("enqueue_bulk", "ceiling", "300/call"),
        ("drain", "pgq", "1 worker, c=10"),
        ("drain", "pgq", "1 worker, c=50"),
        ("drain", "pgq", "1 worker, c=50, async"),
        ("drain", "ceiling", "loop, batch=1"),
        ("drain", "ceiling", "loop, batch=100"),
    }
    for result in report["results"]:
        assert len(result["runs"]) == 1 and result["median"] > 0
        if result["system"] == "pgq":
            assert result["ratio"] > 0
    assert report["machine"]["postgres"]["server_version"]
    assert "| drain | pgq |" in (tmp_path / "latest.md").read_text()
    assert "vs ceiling" in capsys.readouterr().out


def test_bench_options__quick_does_not_overwrite_the_committed_results() -> None:
    config = config_from_args(["--quick", "--jobs", "drain=7", "--scenario", "drain,enqueue_one"])

    assert config.output is None
    assert config.runs == 1
    assert config.sizes.drain == 7
    assert config.scenarios == ("drain", "enqueue_one")


def test_bench_options__unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(["--scenario", "nope"])

    assert exit_info.value.code == 2
