"""The readiness check both HTTP servers answer `/readyz` with (`byoa run`'s port and
`byoa api`): one definition, so the two cannot come to disagree on what "ready" means."""

from __future__ import annotations

from redis.commands.core import Script
from redis.exceptions import RedisError

from router.core import Router


def readiness(router: Router) -> tuple[bool, str]:
    """(ready, the probe's text): Redis answers and holds every Lua script. Scripts a Redis
    forgot (restarted without persistence) are loaded again here, so the next task's first
    call does not pay for it; a Redis error is not ready, named by its type only (its text
    may carry the host's address, never more)."""
    shas = [s.sha for s in vars(router.scripts).values() if isinstance(s, Script)]
    try:
        router.redis.ping()
        if shas and not all(router.redis.script_exists(*shas)):
            router.scripts.load_all()
    except RedisError as e:
        return False, f"redis: {type(e).__name__}"
    return True, "ready"
