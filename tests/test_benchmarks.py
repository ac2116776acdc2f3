"""Each benchmark runs at a tiny size, so that the benchmarks cannot rot (no timing asserted)."""

from __future__ import annotations

import pickle
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.__main__ import main
from benchmarks.original import MovieServer, OriginalClient


def test_writes_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["writes", "--runs", "1", "--count", "40", "--writers", "4"])
    assert result.exit_code == 0, result.output
    assert "group commit, 4 writers, writes/s" in result.output
    assert "a commit per write, server, 4 writers" in result.output
    assert "ratio group / a commit per write (server, same writers)" in result.output
    assert "ratio group / a commit per write (Store in process)" in result.output


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


def test_oneshot_benchmark_runs() -> None:
    result = CliRunner().invoke(main, ["oneshot", "--runs", "1", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "ratio per run" in result.output


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


def test_fanout_benchmark_runs() -> None:
    result = CliRunner().invoke(
        main,
        [
            *("fanout", "--runs", "1", "--servers", "2", "--gets", "20", "--movies", "30"),
            *("--rate-gets", "20"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 servers a side, 30 movies each" in result.output
    assert "ratio of p50 (moviedb / original), per run" in result.output
    assert "original (connection per request)" in result.output


def test_original_design_baseline(tmp_path: Path) -> None:
    """The baseline behaves as the original did: a pickle file rewritten on every change,
    edit updates where present and adds where missing, get asks every server in turn."""
    servers = [MovieServer(0, tmp_path / f"moviedb{i}.p") for i in range(2)]
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,)) for s in servers]
    for thread in threads:
        thread.start()
    try:
        client = OriginalClient([("127.0.0.1", s.server_address[1]) for s in servers])
        assert all(reply["ok"] for _, reply in client.add("Alien", "in space"))
        client.deleteserver(*client.servers[1])
        assert client.edit("Alien", {"year": 1979})[0][1] == {"ok": True}
        client.addserver("127.0.0.1", servers[1].server_address[1])
        client.edit("Heat", "a heist")  # missing everywhere: added everywhere
        assert [reply["info"] for _, reply in client.get("Alien")] == [{"year": 1979}, "in space"]
        assert [reply["titles"] for _, reply in client.all()] == [["Alien", "Heat"]] * 2
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)
    with (tmp_path / "moviedb0.p").open("rb") as file:  # our own file, written by the server
        assert pickle.load(file) == {"Alien": {"year": 1979}, "Heat": "a heist"}


GETS_SMALL = [
    *("gets", "--runs", "1", "--connections", "4", "--depth", "1", "--depth", "4"),
    *("--seconds", "0.3", "--warmup", "0.1", "--movies", "300"),
]


def test_gets_benchmark_runs_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("benchmarks.redis_side.shutil.which", lambda name: None)
    result = CliRunner().invoke(main, GETS_SMALL)
    assert result.exit_code == 0, result.output
    assert "redis-server not found: the Redis column is skipped" in result.output
    assert "depth  4  moviedb  get/s" in result.output
    assert "ratio" not in result.output


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_gets_benchmark_runs_against_redis() -> None:
    result = CliRunner().invoke(main, GETS_SMALL)
    assert result.exit_code == 0, result.output
    assert "depth  1  redis    HGETALL/s" in result.output
    assert "depth  1  ratio moviedb / redis, per run" in result.output
    assert "target >= 0.7" in result.output
    if shutil.which("redis-benchmark"):
        assert "depth  4  redis-benchmark HGETALL/s" in result.output


def test_scale_benchmark_runs() -> None:
    result = CliRunner().invoke(
        main,
        [
            *("scale", "--runs", "1", "--movies", "2000", "--gets", "50"),
            *("--burst", "0.2", "--connections", "4", "--depth", "2"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "get p50 ms, first ask of each title, ratio 2,000 / 1,000 per run" in result.output
    assert "server RSS MB at 2,000, after load" in result.output
    assert "start to first hello s at 2,000" in result.output
