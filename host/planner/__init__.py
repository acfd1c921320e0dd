"""The host's energy planner: prices, PV forecast and load → a 15-minute plan pushed to the Pi."""
