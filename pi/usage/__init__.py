"""The usage ledger: host state intervals and wakes in sqlite, published as usage.json."""
