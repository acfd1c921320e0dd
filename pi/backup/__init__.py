"""The Pi's own backup: its history, baseline, registries and config, sent to the host."""
