"""The rq job of the benchmarks' baseline: nothing, in a module that imports nothing, so a
forked job process pays for no import either."""


def noop() -> None:
    """Nothing."""
