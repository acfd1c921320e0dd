"""Utilities both sides use that are not part of the host–Pi contract."""
