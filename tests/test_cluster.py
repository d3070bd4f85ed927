"""The owner scripts are legal on Redis Cluster: every key a call touches carries its
owner's hash tag, the owner's fixed keys are declared in KEYS, so on a real three-primary
cluster (redis-server --cluster-enabled, redis-cli --cluster create) they run on whichever
primary holds the owner, with no CROSSSLOT or non-local-key error. (The router does not
run on Cluster yet: rq has no Cluster support; docs/deploy.md says what it still needs.)"""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import ClusterNode, RedisCluster, key_slot

from router import lua
from router.accounts import AccountSpec
from router.core import Router
from router.keys import owner_keys
from router.models import Plan, TaskStatus
from router.requests import NewTask, check_message
from router.settings import Settings
from tests.conftest import wait_for
from tests.servers import PrivateRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="needs redis-server and redis-cli",
)
OWNERS = ("alice", "bob", "carol", "dave", "erin", "frank")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """Three primaries, no replicas, on free ports of this host."""
    nodes = []
    for i in range(3):
        workdir: Path = tmp_path_factory.mktemp(f"node{i}")
        args = ["--port", "{port}", "--cluster-enabled", "yes", "--appendonly", "no",
                "--cluster-config-file", str(workdir / "nodes.conf")]  # fmt: skip
        node = PrivateRedis(workdir, args, "redis://127.0.0.1:{port}/0")
        node.port = bus_free_port()
        node.url = f"redis://127.0.0.1:{node.port}/0"
        nodes.append(node)
    try:
        for node in nodes:
            node.start()
        create = ["redis-cli", "--cluster", "create", "--cluster-yes", "--cluster-replicas", "0"]
        create += [f"127.0.0.1:{n.port}" for n in nodes]
        subprocess.run(create, check=True, capture_output=True, timeout=60)
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", nodes[0].port)])
        wait_for(lambda: client.cluster_info()["cluster_state"] == "ok", 30, "the cluster")
        yield client
        client.close()
    finally:
        for node in nodes:
            node.stop()


def bus_free_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free too, and exists."""
    for _ in range(100):
        port = random.randrange(20_000, 55_000)
        try:
            with (
                socket.create_server(("127.0.0.1", port)),
                socket.create_server(("127.0.0.1", port + 10_000)),
            ):
                return port
        except OSError:
            continue
    raise AssertionError("no free pair of ports")


def test_every_owner_script_runs_on_the_primary_that_holds_its_owner(
    cluster: RedisCluster,
) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", key_prefix="cl")
    router = Router(settings, cluster)  # type: ignore[arg-type]  # a cluster client
    router.scripts.load_all()  # on every primary (cluster pipelines do not load scripts)
    primaries = {cluster.get_node_from_key(router.keys.owner_base(o)).name for o in OWNERS}
    assert len(primaries) >= 2  # the owners spread over the cluster
    for owner in OWNERS:
        keys = owner_keys(router.keys, owner)
        assert len({key_slot(k.encode()) for k in keys}) == 1  # one slot per owner
        spec = AccountSpec(id=f"{owner}-pro", owner=owner, plan=Plan.PRO)
        router.pool.add(spec)  # ACCOUNT_WRITE
        tasks = [submit(router, owner, mode) for mode in ("fast", "relax", "turbo")]
        for task in tasks:
            record = router.tasks.get(task.id, owner)
            assert record is not None and record.account_id == spec.id
        first, second, third = tasks
        assert router.tasks.start(owner, first.id, 1)[0]  # START
        assert router.tasks.renew(owner, first.id, 1, "job-1")[0]  # RENEW
        status, _ = router.tasks.settle(owner, first.id, 1, "completed", 1000)  # SETTLE
        assert status == TaskStatus.COMPLETED
        child = submit(router, owner, "", task_type="upscale", parent_id=first.id)
        assert router.tasks.get(child.id, owner).account_id == spec.id  # type: ignore[union-attr]
        assert router.tasks.cancel(owner, second.id)[0] == TaskStatus.CANCELLED  # CANCEL
        assert router.tasks.start(owner, third.id, 1)[0]
        verdict, _ = router.tasks.reap(owner, third.id, 1, "reclaim", 2)  # REAP
        assert verdict
        router.tasks.wake(owner)  # WAKE
        router.pool.update(spec.id, plan=Plan.STANDARD)  # ACCOUNT_WRITE: a plan change
        assert router.pool.get(spec.id).fast_limit == 3  # type: ignore[union-attr]


def submit(router: Router, owner: str, mode: str, **message: str) -> NewTask:
    task = check_message(
        {"owner": owner, "input": {"prompt": "a cat", "process_mode": mode}, **message}
        if mode
        else {"owner": owner, "input": {"index": 1}, **message},
        router.settings,
    )
    assert isinstance(task, NewTask), task
    router.tasks.claim_ids([task])
    (done,), _ = router.tasks.submit_many([task])  # placed; not handed to rq (no Cluster)
    assert done.created
    return task


def test_the_scripts_build_no_key_of_the_owner_but_those_of_one_task_or_account() -> None:
    """Every other key an owner script touches is one of its KEYS: in the expanded source,
    keys are built from the owner base (`O`) or the prefix (`P`) only by the generated
    helpers of one task, account, pin line, webhook secret or done channel."""
    helpers = {"k_acct", "k_task", "k_pin", "k_hook", "k_done"}
    for name in lua.OWNER_SCRIPTS:
        lines = lua.source(name).splitlines()
        built = [
            line.strip()
            for line in lines
            if re.search(r"\b[OP] \.\. '", line)
            and not any(line.lstrip().startswith(f"local function {h}(") for h in helpers)
        ]
        assert built == [], (name, built)
