"""Statistics for gates: bootstrap confidence intervals on quality and latency."""
