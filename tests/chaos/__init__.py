"""Chaos runs: real processes, random kills and Redis restarts (see `chaos.py`)."""
