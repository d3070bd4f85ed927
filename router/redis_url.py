"""What BYOA_REDIS_URL names, and the one client every process makes for it.

A plain server (`redis://`, `rediss://`, `unix://`: redis-py parses these) or a primary
that Sentinel watches (`redis+sentinel://[user:password@]host:port[,host:port...]/<master>
[/<db>]`, `rediss+sentinel://` with TLS): the client asks the sentinels where the primary
is, and asks again once a failover moves it. Either way the pool is a blocking one: a
thread past `max_connections` waits for a free connection, up to `pool_timeout` seconds.
rq's queues and workers use the same client, so they follow a failover too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qsl, unquote

from redis import BlockingConnectionPool, Redis
from redis.connection import URL_QUERY_ARGUMENT_PARSERS, SSLConnection
from redis.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

from router.errors import BadRedisUrl

SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""The Sentinel schemes, and whether each speaks TLS."""
SENTINEL_PORT = 26379
"""A sentinel's port when the URL names none (Sentinel's own default)."""
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
"""Query options for the sentinels themselves (when they require a password of their own);
every other option is redis-py's URL option, for the Redis servers."""
SENTINEL_TIMEOUT_SECONDS = 1.0
"""How long one sentinel may take to answer (connect and reply) before the next is asked,
unless the URL sets `socket_timeout` / `socket_connect_timeout`."""
SHAPE = "redis+sentinel://[user:password@]host:port[,host:port...]/<master>[/<db>]"


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed `redis+sentinel://` URL; its passwords are never in its repr."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """redis-py connection options from the query (`socket_timeout=2`, `ssl_ca_certs=...`)."""
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def shown(self) -> str:
        """The URL without credentials or options: `redis+sentinel://h:26379,h2:26379/m/0`."""
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        return f"{scheme}://{hosts}/{self.master}/{self.db}"


def is_sentinel(url: str) -> bool:
    return url.partition("://")[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a Sentinel URL; BadRedisUrl (whose text never quotes the URL) if it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise _bad("the scheme must be redis+sentinel:// or rediss+sentinel://")
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username, colon, password = userinfo.partition(":")
    sentinels = tuple(_host_port(h) for h in hosts.split(","))
    parts = [unquote(p) for p in path.split("/")] if path else []
    if len(parts) not in (1, 2) or not parts[0]:
        raise _bad("the path must name the master: /<master>[/<db>]")
    db = 0
    if len(parts) == 2 and parts[1] != "":
        if not parts[1].isdigit():
            raise _bad("the database after the master's name must be a number")
        db = int(parts[1])
    options: dict[str, Any] = {}
    sentinel_auth: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in SENTINEL_OPTIONS:
            sentinel_auth[name] = value
        elif name == "db":
            if not value.isdigit():
                raise _bad("db must be a number")
            db = int(value)
        elif name in URL_QUERY_ARGUMENT_PARSERS:
            parser = cast(Callable[[str], Any], URL_QUERY_ARGUMENT_PARSERS[name])
            try:
                options[name] = parser(value)
            except (TypeError, ValueError):
                raise _bad(f"the value of {name} is not valid") from None
        elif name.startswith("ssl_"):
            options[name] = value
        else:
            raise _bad(f"unknown option {name!r}")
    return SentinelUrl(
        sentinels=sentinels,
        master=parts[0],
        db=db,
        tls=SENTINEL_SCHEMES[scheme.lower()],
        username=unquote(username) or None,
        password=unquote(password) if colon else None,
        options=options,
        sentinel_username=sentinel_auth.get("sentinel_username") or None,
        sentinel_password=sentinel_auth.get("sentinel_password") or None,
    )


def _host_port(text: str) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]` or `[v6]:port`."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise _bad("a bracketed IPv6 sentinel address must be [address]:port")
        port = tail[1:]
    else:
        host, _, port = text.partition(":")
        if ":" in port:
            raise _bad("an IPv6 sentinel address must be bracketed: [address]:port")
    if not host:
        raise _bad("every sentinel needs a host: host:port[,host:port...]")
    if port == "":
        return unquote(host), SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise _bad("a sentinel's port must be a number from 1 to 65535")
    return unquote(host), int(port)


def _bad(why: str) -> BadRedisUrl:
    return BadRedisUrl(f"BYOA_REDIS_URL is not a valid Sentinel URL ({why}): {SHAPE}")


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (each new connection goes to the primary the sentinels name, and
    a failover closes those to the old one) that waits for a free connection as
    BlockingConnectionPool does, instead of raising past its limit."""

    def __init__(self, service_name: str, manager: Sentinel, **kwargs: Any) -> None:
        super().__init__(service_name, manager, **kwargs)  # type: ignore[no-untyped-call]


def open_redis(
    url: str, *, max_connections: int, pool_timeout: float, **connection_kwargs: Any
) -> Redis:
    """A client for BYOA_REDIS_URL with a blocking pool; BadRedisUrl if it is not one."""
    if is_sentinel(url):
        return _sentinel_client(
            parse_sentinel_url(url), max_connections, pool_timeout, connection_kwargs
        )
    try:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, **connection_kwargs
        )
    except ValueError:  # its text may quote the URL, password included
        raise BadRedisUrl(
            "BYOA_REDIS_URL is not a valid Redis URL: "
            f"redis[s]://[[user]:password@]host[:port][/db], unix://path, or {SHAPE}",
        ) from None
    return Redis(connection_pool=pool)


def _sentinel_client(
    parsed: SentinelUrl, max_connections: int, pool_timeout: float, extra: Mapping[str, Any]
) -> Redis:
    server: dict[str, Any] = {**extra, **parsed.options, "db": parsed.db}
    if parsed.username is not None:
        server["username"] = parsed.username
    if parsed.password is not None:
        server["password"] = parsed.password
    ssl_options = {k: v for k, v in server.items() if k.startswith("ssl_")}
    asked: dict[str, Any] = {
        "socket_timeout": server.get("socket_timeout") or SENTINEL_TIMEOUT_SECONDS,
        "socket_connect_timeout": server.get("socket_connect_timeout") or SENTINEL_TIMEOUT_SECONDS,
    }
    if parsed.sentinel_username is not None:
        asked["username"] = parsed.sentinel_username
    if parsed.sentinel_password is not None:
        asked["password"] = parsed.sentinel_password
    if parsed.tls:
        asked |= {"ssl": True, **ssl_options}
    manager = Sentinel(list(parsed.sentinels), sentinel_kwargs=asked)
    connection_class = SentinelManagedSSLConnection if parsed.tls else SentinelManagedConnection
    pool = BlockingSentinelPool(
        parsed.master,
        manager,
        is_master=True,
        max_connections=max_connections,
        timeout=pool_timeout,
        connection_class=connection_class,
        **server,
    )
    return Redis(connection_pool=pool)


def where(redis: Redis) -> dict[str, Any]:
    """Where `redis` connects: scheme, host, port, db (or a socket's path, or the sentinels
    and the master's name), never the user nor the password."""
    pool = redis.connection_pool
    kw = pool.connection_kwargs
    if isinstance(pool, SentinelConnectionPool):
        ssl = issubclass(pool.connection_class, SSLConnection)
        hosts = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        return {
            "scheme": "rediss+sentinel" if ssl else "redis+sentinel",
            "sentinels": [f"{h.get('host')}:{h.get('port')}" for h in hosts],
            "master": pool.service_name,
            "db": kw.get("db", 0),
        }
    if "path" in kw:
        return {"scheme": "unix", "path": kw["path"], "db": kw.get("db", 0)}
    scheme = "rediss" if issubclass(pool.connection_class, SSLConnection) else "redis"
    return {"scheme": scheme, "host": kw.get("host"), "port": kw.get("port"), "db": kw.get("db")}


def shown(address: Mapping[str, Any]) -> str:
    """`where` as a URL without credentials: `redis://127.0.0.1:6379/0`."""
    if address["scheme"] == "unix":
        return f"unix://{address['path']}?db={address['db']}"
    if "sentinels" in address:
        hosts = ",".join(address["sentinels"])
        return f"{address['scheme']}://{hosts}/{address['master']}/{address['db']}"
    return f"{address['scheme']}://{address['host']}:{address['port']}/{address['db']}"
