"""Benchmarks of the matcher: recommendation latency over HTTP, full re-matching, embedding throughput.

Run with ``python -m bench [--only NAME] [--full]``. Every benchmark measures its baseline in the
same run and reports ratios, p50/p99 and peak memory; results go to bench/results/ (git-ignored).
"""
