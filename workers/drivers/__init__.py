"""Account drivers, chosen by the `driver` setting."""

from __future__ import annotations

from redis import Redis

from router.settings import Settings
from workers.drivers.base import Driver


def make_driver(settings: Settings, redis: Redis) -> Driver:
    """The driver the settings name (only `simulated` so far)."""
    if settings.driver == "simulated":
        from workers.drivers.simulated import SimulatedDriver

        return SimulatedDriver(settings, redis)
    raise ValueError(f"unknown driver {settings.driver!r}")
