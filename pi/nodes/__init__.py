"""ESP32 nodes: pairing, the registry, jobs and their log, the node daemon, flashing."""
