"""Dataset registry (filled in by the data modules)."""
