"""The host's inbox receiver: files forwarded by the Pi, stored only when whole and verified."""
