"""Everything that runs on the host (the NAS or home server that sleeps)."""
