"""Benchmarks: throughput and latency, run by hand (`make bench`), never timed assertions."""
