"""Wake on demand: while the Pi answers for the host's name, who wants the host wakes it."""
