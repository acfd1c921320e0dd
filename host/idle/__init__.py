"""Sleep when idle: checks, the pure decision, the loop inside the host agent (issue #11 §1)."""
