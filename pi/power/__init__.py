"""Power monitoring of Tapo plugs: python-kasa by address, sqlite history, power.json."""
