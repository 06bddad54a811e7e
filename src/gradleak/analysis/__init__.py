"""Analyses of a model's exposure that need no attack run: the R-GAP layer chain, its linear
systems and the rank analysis."""
