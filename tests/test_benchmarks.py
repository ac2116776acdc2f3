"""Each benchmark runs at a tiny size, so that the benchmarks cannot rot (no timing asserted)."""

from __future__ import annotations

from click.testing import CliRunner

from benchmarks.__main__ import main


def test_writes_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["writes", "--runs", "1", "--count", "40", "--writers", "4"])
    assert result.exit_code == 0, result.output
    assert "group commit, 4 writers, writes/s" in result.output
    assert "ratio (group / single)" in result.output


def test_sync_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["sync", "--runs", "1", "--movies", "300", "--differ", "3"])
    assert result.exit_code == 0, result.output
    assert "sync, identical" in result.output
    assert "sync, 3 differ" in result.output
    assert "changed 3" in result.output  # the three edited movies, and only they, were repaired


def test_search_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["search", "--runs", "1", "--movies", "500"])
    assert result.exit_code == 0, result.output
    assert "200 searches per run" in result.output
    assert "1,000 movies  p50 ms" in result.output


def test_import_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["import", "--runs", "1", "--movies", "300"])
    assert result.exit_code == 0, result.output
    assert "raw executemany" in result.output
    assert "ratio (import, 3 servers / raw, median)" in result.output


def test_soak_benchmark_runs() -> None:
    result = CliRunner().invoke(
        main,
        [
            *("soak", "--rounds", "1", "--writes", "300", "--kills", "2", "--cycles", "3"),
            *("--timeout", "0.15", "--editors", "3", "--edits", "20"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "round 1 kill -9: 2 SIGKILLs" in result.output
    assert "0 lost; integrity_check ok 3 of 3" in result.output
    assert "round 1 hung/slow: 3 faults" in result.output
    assert "60 applied" in result.output
    assert "chain unbroken" in result.output
    assert "0 lost; 0 failed integrity checks" in result.output
