"""The host's side of the Pi's backup: ``PUT /api/v1/backup``, stored whole or not at all."""
