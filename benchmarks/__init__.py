"""Benchmarks: `python -m benchmarks NAME [options]`; figures go to docs/benchmarks.md."""
