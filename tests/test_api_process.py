"""`byoa api` as its own process: driven by a published PiAPI client (PyPI's
`piapi-skills`, whose `piapi-cli` reads PIAPI_API_BASE and PIAPI_API_KEY) with real
workers, fed random bytes that must never answer 5xx nor crash it, and SIGKILLed under
load without losing a task it accepted."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.apikeys import ApiKeys
from router.core import Router
from router.models import TaskStatus
from router.scripts import text
from tests.conftest import terminal, wait_for
from tests.servers import free_port

PIAPI_CLI = Path(sys.executable).parent / "piapi-cli"
FUZZ_EXAMPLES = int(os.environ.get("BYOA_FUZZ_EXAMPLES", "300"))


@pytest.fixture
def api_process(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> tuple[str, subprocess.Popen[bytes]]:
    """A `byoa api` process on a free port, ready; (its base URL, the process)."""
    port = free_port()
    proc = spawn("api", "--host", "127.0.0.1", "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, "byoa api exited"
        try:
            return httpx.get(base + "/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, 30, "byoa api to be ready")
    return base, proc


def piapi(base: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The published client's command line, pointed at us."""
    env = {**os.environ, "PIAPI_API_BASE": base, "PIAPI_API_KEY": key}
    return subprocess.run(
        [str(PIAPI_CLI), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_the_published_piapi_client_runs_tasks_through_byoa_api(
    api_process: tuple[str, subprocess.Popen[bytes]],
    router: Router,
    add_account: Callable[..., None],
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    base, _ = api_process
    add_account("a-pro", "alice", "pro")
    key = ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    spawn("worker")
    fast = ["--poll-interval", "0.1", "--timeout", "60"]

    done = piapi(
        base, key, "imagine", "a lighthouse", "--aspect", "3:2", "--process-mode", "fast", *fast
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)["data"]
    assert data["status"] == "completed" and data["output"]["image_url"]
    assert data["input"]["prompt"] == "a lighthouse --ar 3:2 --fast"
    parent = data["task_id"]

    upscale = json.dumps({"origin_task_id": parent, "index": "1"})
    made = piapi(base, key, "submit", "midjourney", "upscale", upscale, "--id-only")
    assert made.returncode == 0, made.stderr
    child = made.stdout.strip()
    waited = piapi(base, key, "wait", child, *fast)
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["data"]["status"] == "completed"
    result = piapi(base, key, "result", child)
    assert result.returncode == 0 and json.loads(result.stdout)["data"]["task_id"] == child

    # cancel: a finished task answers with its record; an unknown one 404.
    assert piapi(base, key, "cancel", child).returncode == 0
    missing = piapi(base, key, "result", "0123456789abcdef")
    assert missing.returncode == 1 and "fetch failed [404]" in missing.stderr
    refused = piapi(base, "byoa_000000000000_" + "x" * 43, "imagine", "x", "--no-wait")
    assert refused.returncode == 1 and "submit failed [401]" in refused.stderr
    bad = piapi(base, key, "submit", "midjourney", "video", "{}")
    assert bad.returncode == 1 and "unknown_task_type" in bad.stderr

    # describe and blend as the client's model list names them, PiAPI's inputs.
    image = "https://example.com/a.png"
    describe = json.dumps({"image_url": image})
    described = piapi(base, key, "run", "midjourney", "describe", describe, *fast)
    assert described.returncode == 0, described.stderr
    output = json.loads(described.stdout)["data"]["output"]
    assert len(output["prompts"]) == 4 and output["description"]
    blend = json.dumps({"image_urls": [image, image], "dimension": "square"})
    blended = piapi(base, key, "run", "midjourney", "blend", blend, *fast)
    assert blended.returncode == 0, blended.stderr
    assert json.loads(blended.stdout)["data"]["output"]["image_url"]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
TASKISH = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["midjourney", "flux", ""]) | JSONISH,
        "task_type": st.sampled_from(["imagine", "upscale", "pan", "describe"]) | JSONISH,
        "input": st.dictionaries(
            st.sampled_from(["prompt", "origin_task_id", "index", "aspect_ratio", "process_mode"])
            | st.text(max_size=8),
            JSONISH,
        )
        | JSONISH,
        "config": JSONISH,
    }
)


def test_random_bodies_never_answer_5xx_nor_crash_the_process(
    api_process: tuple[str, subprocess.Popen[bytes]],
    router: Router,
    add_account: Callable[..., None],
) -> None:
    base, proc = api_process
    add_account("a-pro", "alice", "pro")
    key = ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    headers = {"x-api-key": key, "content-type": "application/json"}
    bodies = (
        st.binary(max_size=300)
        | TASKISH.map(lambda d: json.dumps(d).encode())
        | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
    )

    with httpx.Client(base_url=base, timeout=10) as client:

        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(body=bodies)
        def post(body: bytes) -> None:
            answer = client.post("/api/v1/task", content=body, headers=headers)
            assert answer.status_code < 500, (body, answer.text)
            envelope = answer.json()
            assert envelope["code"] == answer.status_code
            if answer.status_code != 200:
                assert envelope["error"]["code"], envelope

        post()
        assert proc.poll() is None
        assert client.get("/healthz").status_code == 200


def _task_ids(answer: httpx.Response, mj: bool) -> str | None:
    """The task id a submission's answer gives, or None if it accepted nothing."""
    if answer.status_code != 200:
        return None
    try:
        body: dict[str, Any] = answer.json()
        if mj:  # 1: submitted; 22: waiting in the owner's line for a free account
            return str(body["result"]) if body.get("code") in (1, 22) else None
        return str(body["data"]["task_id"]) if body.get("code") == 200 else None
    except (ValueError, KeyError, TypeError):
        return None


def test_a_killed_api_process_loses_no_accepted_task(
    api_process: tuple[str, subprocess.Popen[bytes]],
    router: Router,
    add_account: Callable[..., None],
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """Client threads post imagines to both APIs without pause; the `byoa api` process is
    SIGKILLed among them and a new one started on its port. Neither API lets a client
    choose a task id, so a post that got no answer is not retried: it may or may not have
    made a task. Every answered one must exist once and run to its end, and no prompt may
    make two tasks."""
    base, first = api_process
    add_account("a-pro", "alice", "pro")
    key = ApiKeys(router.redis, router.scripts).create("alice")[1].get_secret_value()
    accepted: dict[str, str] = {}  # each post's own prompt word -> the task id answered
    unanswered: list[str] = []
    unexpected: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def post(n: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            for i in itertools.count():
                if stop.is_set():
                    return
                word = f"w{n}x{i}"
                mj = i % 4 == 3
                try:
                    if mj:
                        answer = http.post(
                            "/mj/submit/imagine",
                            json={"prompt": f"a {word}"},
                            headers={"mj-api-secret": key},
                        )
                    else:
                        body = {"model": "midjourney", "task_type": "imagine"}
                        answer = http.post(
                            "/api/v1/task",
                            json={**body, "input": {"prompt": f"a {word}"}},
                            headers={"x-api-key": key},
                        )
                except httpx.TransportError:  # reset, refused or cut short: no answer
                    with lock:
                        unanswered.append(word)
                    stop.wait(0.01)  # the server is down: a short pause before the next post
                    continue
                task_id = _task_ids(answer, mj)
                with lock:
                    if task_id is None:
                        unexpected.append(f"{answer.status_code} {answer.text[:200]}")
                    else:
                        accepted[word] = task_id

    def count() -> int:
        with lock:
            return len(accepted)

    threads = [threading.Thread(target=post, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: count() >= 60, 60, "accepted posts before the kill")
        first.kill()
        assert first.wait(10) == -signal.SIGKILL
        before = count()
        second = spawn("api", "--host", "127.0.0.1", "--port", base.rsplit(":", 1)[1])

        def ready() -> bool:
            assert second.poll() is None, "the new byoa api exited"
            try:
                return httpx.get(base + "/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, "the new byoa api to be ready")
        wait_for(lambda: count() >= before + 60, 60, "accepted posts after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert not unexpected, unexpected[:5]
    assert unanswered, "no post went unanswered: the kill was not under load"

    spawn("worker")
    wait_for(terminal(router, list(accepted.values())), 120, "every accepted task to end")
    made: dict[str, list[str]] = {}  # prompt word -> the tasks it made
    base_key = router.keys.task("alice", "")
    for raw in router.redis.scan_iter(match=base_key + "*", count=1000):
        task_id = text(raw)[len(base_key) :]
        task = router.tasks.get(task_id, "alice")
        if task is not None and task.prompt:
            made.setdefault(task.prompt.split()[1], []).append(task_id)
    assert {w: ids for w, ids in made.items() if len(ids) > 1} == {}
    for word, task_id in accepted.items():
        assert made.get(word) == [task_id], word
        task = router.tasks.get(task_id, "alice")
        assert task is not None and task.status is TaskStatus.COMPLETED, task
    extra = made.keys() - accepted.keys()
    assert extra <= set(unanswered)  # made by a post whose answer the kill cut off
    wait_for(terminal(router, [ids[0] for ids in made.values()]), 60, "the others to end")
