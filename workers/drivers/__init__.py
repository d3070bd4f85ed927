"""Account drivers, chosen by the `driver` setting."""

from __future__ import annotations

from redis import Redis

from router.settings import Settings
from workers.drivers.base import Driver


def make_driver(settings: Settings, redis: Redis) -> Driver:
    """The driver the settings name: `simulated` or `mjproxy`."""
    if settings.driver == "simulated":
        from workers.drivers.simulated import SimulatedDriver

        return SimulatedDriver(settings, redis)
    if settings.driver == "mjproxy":
        from workers.drivers.mjproxy import MjProxyDriver

        return MjProxyDriver(settings, redis)
    raise ValueError(f"unknown driver {settings.driver!r}")
