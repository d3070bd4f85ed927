"""BYOA_REDIS_URL with Sentinel: `redis+sentinel://` parses as documented, a bad one is a
clear error that never quotes the password, and every process reaches the primary the
sentinels name, following a failover."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from router.accounts import AccountSpec
from router.client import Client
from router.core import Router, connect
from router.errors import BadRedisUrl
from router.presence import redis_address, redis_url_shown
from router.redis_url import BlockingSentinelPool, SentinelUrl, parse_sentinel_url
from router.settings import Settings
from tests.conftest import wait_for
from tests.sentinel_servers import SentinelSet, sentinel_set

needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def test_a_sentinel_url_names_its_sentinels_master_db_and_credentials() -> None:
    url = "redis+sentinel://app:p%40ss@10.0.0.1:26380,sentinel-b,[::1]:26381/mymaster/3"
    parsed = parse_sentinel_url(url)
    assert parsed.sentinels == (("10.0.0.1", 26380), ("sentinel-b", 26379), ("::1", 26381))
    assert (parsed.master, parsed.db, parsed.tls) == ("mymaster", 3, False)
    assert (parsed.username, parsed.password) == ("app", "p@ss")
    assert "p@ss" not in repr(parsed) and "p%40ss" not in repr(parsed)
    assert (
        parsed.shown() == "redis+sentinel://10.0.0.1:26380,sentinel-b:26379,[::1]:26381/mymaster/3"
    )


def test_tls_password_only_options_and_the_sentinels_own_password() -> None:
    url = (
        "rediss+sentinel://:secret@s1:1,s2:2/m?socket_timeout=2.5&ssl_cert_reqs=none"
        "&sentinel_password=other"
    )
    parsed = parse_sentinel_url(url)
    assert parsed == SentinelUrl(
        sentinels=(("s1", 1), ("s2", 2)),
        master="m",
        db=0,
        tls=True,
        username=None,
        password="secret",
        options={"socket_timeout": 2.5, "ssl_cert_reqs": "none"},
        sentinel_password="other",
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://:CANARY@h:26379", "must name the master"),
        ("redis+sentinel://:CANARY@h:26379/", "must name the master"),
        ("redis+sentinel://:CANARY@h:26379/m/x", "must be a number"),
        ("redis+sentinel://:CANARY@h:26379/m/0/extra", "must name the master"),
        ("redis+sentinel://:CANARY@h:port/m", "port must be a number"),
        ("redis+sentinel://:CANARY@h:70000/m", "port must be a number"),
        ("redis+sentinel://:CANARY@h:1,,h:2/m", "needs a host"),
        ("redis+sentinel://:CANARY@::1:26379/m", "must be bracketed"),
        ("redis+sentinel://:CANARY@[::1/m", "bracketed IPv6"),
        ("redis+sentinel://:CANARY@h/m?retries=3", "unknown option 'retries'"),
        ("redis+sentinel://:CANARY@h/m?socket_timeout=soon", "socket_timeout is not valid"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong_and_never_quotes_it(url: str, why: str) -> None:
    with pytest.raises(BadRedisUrl) as bad:
        connect(Settings(redis_url=SecretStr(url)))
    assert bad.value.code == "bad_redis_url"
    assert why in bad.value.message and "redis+sentinel://[user:password@]" in bad.value.message
    assert "CANARY" not in str(bad.value)


def test_a_bad_plain_url_names_the_sentinel_form_too() -> None:
    with pytest.raises(BadRedisUrl) as bad:
        connect(Settings(redis_url=SecretStr("http://:CANARY@h:6379/0")))
    assert "redis+sentinel://" in bad.value.message and "CANARY" not in str(bad.value)


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    with sentinel_set(tmp_path) as group:
        yield group


@needs_redis
def test_every_process_reaches_the_primary_the_sentinels_name_and_follows_a_failover(
    sentinels: SentinelSet, prefix: str
) -> None:
    settings = Settings(redis_url=SecretStr(sentinels.url), key_prefix=prefix, sim_speed=2000)
    router = Router(settings)
    pool = router.redis.connection_pool
    assert isinstance(pool, BlockingSentinelPool) and pool.max_connections == 100
    shown = redis_url_shown(redis_address(router.redis))
    assert shown == sentinels.url
    router.apply(router.pool.add(AccountSpec(id="a-pro", owner="alice", plan="pro")))
    client = Client(settings, router.redis)
    first = client.submit("alice", "a cat", mode="fast", id="before")
    assert sentinels.primary().client.hget(router.keys.task("alice", first.id), "status")

    old = sentinels.primary()
    old.kill()
    wait_for(lambda: sentinels.primary_port() not in (None, old.port), 30, "a failover")
    after = wait_for(lambda: _submitted(client), 30, "a submission on the new primary")
    assert sentinels.primary().client.exists(router.keys.task("alice", after))

    env = {
        **os.environ,
        "BYOA_REDIS_URL": sentinels.url,
        "BYOA_KEY_PREFIX": prefix,
        "BYOA_SIM_SPEED": "2000",
        "BYOA_METRICS_ENABLED": "false",
    }
    worker = subprocess.run(  # an rq worker (burst) on the Sentinel's primary
        [sys.executable, "-m", "router", "worker", "--burst"], env=env, timeout=120
    )
    assert worker.returncode == 0
    done = client.get(after)
    assert done is not None and done.status == "completed"


def _submitted(client: Client) -> str | None:
    try:
        return client.submit("alice", "a dog", mode="fast", id="after").id
    except Exception:
        return None


@needs_redis
def test_a_sentinel_pool_waits_for_a_free_connection(sentinels: SentinelSet) -> None:
    settings = Settings(redis_url=SecretStr(sentinels.url))
    redis = connect(settings)
    pool = redis.connection_pool
    assert isinstance(pool, BlockingSentinelPool)
    held = [pool.get_connection() for _ in range(pool.max_connections)]
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(pool.get_connection()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got  # waits, rather than raising past the limit
    pool.release(held.pop())
    waiter.join(5)
    assert got and got[0] is not None
    for c in held + got:
        pool.release(c)  # type: ignore[arg-type]
