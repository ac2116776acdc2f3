"""Entry point: `python -m benchmarks writes --runs 5`."""

from __future__ import annotations

import click

from benchmarks.fanout import fanout
from benchmarks.gets import gets
from benchmarks.imports import import_benchmark
from benchmarks.oneshot import oneshot
from benchmarks.scale import scale
from benchmarks.search import search
from benchmarks.soak import soak
from benchmarks.sync import sync
from benchmarks.writes import writes


@click.group()
def main() -> None:
    """moviedb benchmarks (each loop bounded in count and time; loopback only)."""


main.add_command(writes)
main.add_command(sync)
main.add_command(import_benchmark)
main.add_command(search)
main.add_command(oneshot)
main.add_command(soak)
main.add_command(fanout)
main.add_command(gets)
main.add_command(scale)

if __name__ == "__main__":
    main()
