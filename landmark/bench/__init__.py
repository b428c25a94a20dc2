"""Benchmarks: inference latency and throughput of the landmark models."""
