"""Victim model registry (filled in by the model modules)."""
