"""Prometheus metrics of the Pi, built from its public files."""
