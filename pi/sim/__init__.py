"""Simulated devices for tests, benchmarks and the demo (loopback only)."""
