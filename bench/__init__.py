"""Benchmarks and simulations (run as scripts or with `python -m bench.<name>`)."""
