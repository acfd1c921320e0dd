"""Everything that runs on the Raspberry Pi."""
