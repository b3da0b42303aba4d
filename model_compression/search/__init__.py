"""Accuracy-aware recipe search: the space, its sensitivity pruning, judging and the Pareto front."""
