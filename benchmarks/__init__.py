"""Benchmarks: asv suite (asv_*.py) and pytest-benchmark files (test_bench_*.py)."""
