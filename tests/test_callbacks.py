"""Backend callbacks: a signed POST to a router's HTTP port makes a job's next poll due at
once, and nothing else; against each midjourney-proxy model, a job that ends is settled
long before its next regular poll because the proxy called back (real Redis, real HTTP)."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from redis import Redis

from router import callbacks
from router.accounts import AccountSpec
from router.callbacks import MAX_BODY, Callbacks, Hook
from router.client import Client
from router.core import Router
from router.http import serve
from router.models import Plan
from router.polls import Entry
from router.scripts import text
from router.settings import Settings
from tests.conftest import TEST_REDIS_URL, wait_for
from tests.mjproxy_stub import StubProxy
from workers.jobs import run_task
from workers.poller import Poller

SECRET = "stub-secret"
POLL_INTERVAL = 30.0
"""Long: a job settled within seconds of its end was settled because its proxy called."""


@pytest.fixture
def receiver(prefix: str, redis_conn: Redis) -> Iterator[str]:
    """A router's HTTP endpoint on a free port (its base URL), as `byoa run` serves it."""
    settings = Settings(
        redis_url=SecretStr(TEST_REDIS_URL),
        key_prefix=prefix,
        metrics_port=0,
        metrics_host="127.0.0.1",
    )
    server = serve(Router(settings, redis_conn))
    assert server is not None
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(settings: Settings, receiver: str) -> Settings:
    """This module's processes: the midjourney-proxy driver, callbacks to `receiver`, and
    a poll interval no test waits out."""
    return settings.model_copy(
        update={
            "driver": "mjproxy",
            "callback_url": receiver,
            "poll_interval_seconds": POLL_INTERVAL,
            "transient_backoff_seconds": 0.01,
            "mjproxy": settings.mjproxy.model_copy(update={"request_timeout_seconds": 2.0}),
        }
    )


@pytest.fixture
def signer(router: Router) -> Callbacks:
    """What a worker signs with (another process's view of the same secret)."""
    return Callbacks(router.redis, router.keys, router.polls)


def post(
    url: str, body: bytes = b"", method: str = "POST", length: int | None = None
) -> tuple[int, dict[str, str]]:
    """(status, headers) of one request; `length`: a Content-Length sent without its body."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.putrequest(method, parts.path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body) if length is None else length))
        conn.endheaders(body if length is None else None)
        answer = conn.getresponse()
        answer.read()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}
    finally:
        conn.close()


def counted(base: str) -> dict[str, float]:
    """`byoa_callbacks_total` by result, as the endpoint serves it."""
    conn = http.client.HTTPConnection(urlsplit(base).netloc, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    return {
        s.labels["result"]: s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "byoa_callbacks_total"
    }


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k, 0.0)}


def due_in(router: Router, entry: Entry) -> float | None:
    """Seconds until the entry's next poll by the Redis clock (None: not scheduled)."""
    score = router.redis.zscore(router.keys.polls, entry.member)
    if score is None:
        return None
    seconds, micros = router.redis.time()
    return (score - (int(seconds) * 1_000_000 + int(micros))) / 1e6


def stored_secret(router: Router) -> str:
    """The callback secret as Redis holds it."""
    raw = router.redis.get(router.keys.callback_secret)
    assert raw is not None
    return text(raw)


def later(router: Router, entry: Entry, hours: float = 1.0) -> None:
    """Schedule the entry's next poll `hours` from now (a job just polled)."""
    seconds, _ = router.redis.time()
    router.polls.add(entry, int((int(seconds) + hours * 3600) * 1_000_000))


# --- The receiver -------------------------------------------------------------------------


def test_a_signed_callback_makes_its_jobs_poll_due_now_and_nothing_else(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    entry, other = Entry("alice", "t1", 1), Entry("alice", "t2", 1)
    later(router, entry)
    later(router, other)
    task_key = router.keys.task("alice", "t1")
    router.redis.hset(task_key, mapping={"status": "running", "attempt": "1"})
    before = counted(receiver)
    status, _ = post(signer.url(receiver, entry), b'{"status": "SUCCESS", "id": "forged"}')
    assert status == 204
    assert due_in(router, entry) is not None and due_in(router, entry) <= 0  # type: ignore[operator]
    assert due_in(router, other) > 3000  # type: ignore[operator]
    assert router.redis.hget(task_key, "status") == b"running"  # the body settles nothing
    assert delta(before, counted(receiver)) == {"accepted": 1}


def test_a_bad_signature_is_refused_and_counted(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    entry = Entry("alice", "t1", 1)
    later(router, entry)
    url = signer.url(receiver, entry)
    good = url.rsplit("/", 1)[1]
    forged = url[: -len(good)] + ("0" if good[0] != "0" else "1") + good[1:]
    before = counted(receiver)
    assert post(forged)[0] == 403
    assert due_in(router, entry) > 3000  # type: ignore[operator]
    assert delta(before, counted(receiver)) == {"bad_signature": 1}


def test_another_attempts_signature_does_not_poke_this_attempt(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    first, second = Entry("alice", "t1", 1), Entry("alice", "t1", 2)
    later(router, second)
    sig = signer.sign(first)
    assert post(f"{receiver}/hooks/job/alice/t1/2/{sig}")[0] == 403
    assert post(f"{receiver}/hooks/job/bob/t1/1/{sig}")[0] == 403  # nor another owner's
    assert due_in(router, second) > 3000  # type: ignore[operator]
    assert post(signer.url(receiver, second))[0] == 204
    assert due_in(router, second) <= 0  # type: ignore[operator]


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/job/alice/t1/1",  # no signature
        "/hooks/job/alice/t1/1/{sig}/more",
        "/hooks/job/al.ice/t1/1/{sig}",  # not an id
        "/hooks/job/alice/t%2F1/1/{sig}",  # a slash inside a part
        "/hooks/job/alice/t1/01/{sig}",  # not the attempt as written
        "/hooks/job/alice/t1/0/{sig}",
        "/hooks/job/alice/t1/x/{sig}",
        "/hooks/job/alice/t1/1/{upper}",
        "/hooks/job/alice/t1/1/{short}",
        "/hooks/job//t1/1/{sig}",
    ],
)
def test_a_malformed_path_is_not_found_and_counted(
    path: str, router: Router, receiver: str, signer: Callbacks
) -> None:
    entry = Entry("alice", "t1", 1)
    later(router, entry)
    sig = signer.sign(entry)
    before = counted(receiver)
    url = receiver + path.format(sig=sig, upper=sig.upper(), short=sig[:-1])
    assert post(url)[0] == 404
    assert due_in(router, entry) > 3000  # type: ignore[operator]
    assert delta(before, counted(receiver)) == {"malformed": 1}


def test_only_post_is_allowed(router: Router, receiver: str, signer: Callbacks) -> None:
    entry = Entry("alice", "t1", 1)
    later(router, entry)
    status, headers = post(signer.url(receiver, entry), method="GET")
    assert (status, headers.get("allow")) == (405, "POST")
    assert due_in(router, entry) > 3000  # type: ignore[operator]


def test_a_callback_for_an_attempt_no_longer_polled_creates_nothing(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    finished = Entry("alice", "t1", 1)  # settled: its entry is gone
    assert post(signer.url(receiver, finished))[0] == 204  # nothing to do
    assert router.polls.size() == 0


def test_a_body_over_the_limit_is_refused_unread(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    entry = Entry("alice", "t1", 1)
    later(router, entry)
    url = signer.url(receiver, entry)
    assert post(url, length=MAX_BODY + 1)[0] == 413  # refused before any of it is sent
    assert due_in(router, entry) > 3000  # type: ignore[operator]
    assert post(url, b"x" * MAX_BODY)[0] == 204  # the largest read, and thrown away
    assert due_in(router, entry) <= 0  # type: ignore[operator]


def test_neither_the_secret_nor_a_signature_is_logged(
    router: Router, receiver: str, signer: Callbacks, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    entry = Entry("alice", "t1", 1)
    later(router, entry)
    url = signer.url(receiver, entry)
    sig = url.rsplit("/", 1)[1]
    assert post(url)[0] == 204
    assert post(url, method="PUT")[0] == 405
    assert post(url + "/x")[0] == 404
    assert post(url.replace("/t1/", "/t2/"))[0] == 403
    local = {"metrics_port": 0, "metrics_host": "127.0.0.1"}
    away = Router(router.settings.model_copy(update=local), Redis.from_url("redis://127.0.0.1:1"))
    server = serve(away)  # a router whose Redis is down
    assert server is not None
    try:
        assert post(f"http://127.0.0.1:{server.server_port}{urlsplit(url).path}")[0] == 503
    finally:
        server.shutdown()
        server.server_close()
    secret = stored_secret(router)
    assert caplog.records  # the receiver did log, without them
    assert sig not in caplog.text and secret not in caplog.text


def test_one_secret_per_prefix_made_once_and_made_again_if_redis_lost_it(
    router: Router, signer: Callbacks
) -> None:
    entry = Entry("alice", "t1", 1)
    other = Callbacks(router.redis, router.keys, router.polls)  # another process
    assert signer.sign(entry) == other.sign(entry)
    secret = stored_secret(router)
    assert len(secret) == 64 and int(secret, 16) >= 0
    router.redis.delete(router.keys.callback_secret)  # a Redis restarted empty
    fresh = Callbacks(router.redis, router.keys, router.polls)
    hook = Hook(entry, fresh.sign(entry))
    assert stored_secret(router) != secret
    assert signer.verify(hook)  # the receiver reads the new secret on a mismatch


def test_the_callback_url_setting_is_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BYOA_CALLBACK_URL", "http://byoa-router:9464/")
    assert Settings().callback_url == "http://byoa-router:9464"
    assert Settings(callback_url="").callback_url is None
    for bad in (
        "ftp://router:9464",
        "http://user:pw@router:9464",
        "http://router:9464/?x=1",
        "http://router:9464/#top",
        "router:9464",
        "http://",
        "http://router/" + "x" * 1100,
    ):
        with pytest.raises(ValidationError, match="callback_url"):
            Settings(callback_url=bad)


# --- End to end, against each proxy model -------------------------------------------------


@pytest.fixture
def proxies() -> Iterator[Callable[..., StubProxy]]:
    with ExitStack() as stack:
        yield lambda **kw: stack.enter_context(StubProxy(**kw))


def behind(router: Router, proxy: StubProxy) -> StubProxy:
    """`proxy`, fronting alice's pro account `a-pro` (its server left for the driver to find)."""
    spec = AccountSpec(
        id="a-pro",
        owner="alice",
        plan=Plan.PRO,
        backend_url=proxy.url,
        credentials=SecretStr(SECRET),
    )
    router.apply(router.pool.add(spec))
    return proxy


def ended_now(proxy: StubProxy) -> None:
    """Midjourney finishes every job the account runs (a `long` one included) now."""
    with proxy._lock:
        for task in proxy.tasks.values():
            task["_ends"] = 0


@pytest.mark.parametrize("server", ["trueai", "novicezk"])
def test_a_job_that_ends_is_settled_at_once_because_its_proxy_called_back(
    server: str,
    router: Router,
    client: Client,
    receiver: str,
    proxies: Callable[..., StubProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = behind(router, proxies(server=server, secret=SECRET))
    poller = Poller(Router(router.settings, router.redis))
    before = counted(receiver)

    def run_to_its_end(task_id: str, submit_path: str) -> str:
        """Submit the task, poll it once, let its job end: it settles on the callback."""
        router.queue.empty()  # type: ignore[no-untyped-call]
        assert run_task("alice", task_id, 1) == "submitted"
        entry = Entry("alice", task_id, 1)
        url = callbacks.of(router).url(receiver, entry)
        assert proxy.sent(submit_path)[-1]["notifyHook"] == url
        # the worker's poller polls it first: running, so the next is due in POLL_INTERVAL
        # (while claimed it is held for longer: 5 poll intervals)
        wait_for(
            lambda: POLL_INTERVAL - 10 < (due_in(router, entry) or 0) <= POLL_INTERVAL + 1,
            timeout=10,
            what="the job's first poll",
        )
        ended_now(proxy)  # the proxy stores the job's end, then POSTs it to the hook

        def settled() -> bool:  # the poller, idle, looks for due jobs every quarter second
            done = client.get(task_id)
            return done is not None and done.status == "completed"

        wait_for(settled, timeout=10, what="the task to settle on its proxy's callback")
        done = client.get(task_id)
        assert done is not None and done.handle
        proxy_id = done.handle.rsplit(":", 1)[1]
        with proxy._lock:
            answers = [(change, answer) for t, change, answer in proxy.notified if t == proxy_id]
        assert ("SUCCESS:100%", 204) in answers
        return url

    stop = threading.Event()
    polling = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    polling.start()
    try:
        grid = client.submit("alice", "a long lighthouse", mode="fast")  # runs ten minutes
        run_to_its_end(grid.id, "/mj/submit/imagine")
        child = client.submit("alice", task_type="upscale", parent_id=grid.id, input={"index": 2})
        press = "/mj/submit/action" if server == "trueai" else "/mj/submit/change"
        url = run_to_its_end(child.id, press)
    finally:
        stop.set()
        polling.join(timeout=10)
        poller.threads.shutdown()
    assert router.polls.size() == 0
    assert post(url)[0] == 204  # one more (or a late one) for a settled job: nothing to do
    assert router.polls.size() == 0
    assert delta(before, counted(receiver)).keys() == {"accepted"}
    secret = stored_secret(router)
    assert url.rsplit("/", 1)[1] not in caplog.text and secret not in caplog.text


def test_without_a_callback_url_no_hook_is_sent(
    router: Router, client: Client, proxies: Callable[..., StubProxy]
) -> None:
    from workers import jobs

    proxy = behind(router, proxies(server="novicezk", secret=SECRET))
    jobs.use_settings(router.settings.model_copy(update={"callback_url": None}))
    task = client.submit("alice", "a long lighthouse", mode="fast")
    router.queue.empty()  # type: ignore[no-untyped-call]
    assert run_task("alice", task.id, 1) == "submitted"
    assert "notifyHook" not in proxy.sent("/mj/submit/imagine")[-1]
    assert proxy.tasks and not proxy.notified


def test_the_longest_callback_url_fits_the_servers_limit(router: Router) -> None:
    from workers.drivers.mjproxy import MAX_NOTIFY_HOOK

    base = Settings(callback_url="https://" + "r" * 1000 + ".example").callback_url
    assert base is not None
    longest = Entry("o" * 64, "t" * 64, 999_999_999)
    assert len(callbacks.of(router).url(base, longest)) <= MAX_NOTIFY_HOOK


def test_a_burst_of_callbacks_is_answered_not_reset(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    """Backends call back in bursts (one POST per job change): a listen backlog of 5
    would reset most of them."""
    entry = Entry("alice", "burst", 1)
    url = signer.url(receiver, entry)
    with ThreadPoolExecutor(200) as pool:
        codes = list(pool.map(lambda _: post(url)[0], range(400)))
    assert codes == [204] * 400


def test_a_callback_during_a_poll_is_not_undone_when_that_poll_reschedules_its_job(
    router: Router, receiver: str, signer: Callbacks
) -> None:
    """The job ends while a poller that saw it running still holds it: the callback's
    "due now" survives that poller's "next poll in an interval"."""
    entry = Entry("alice", "racing", 1)
    router.polls.add(entry)
    claim = router.polls.claim(10, 60_000_000)  # a poller holds it (it is being polled)
    assert claim.entries == [entry]
    assert post(signer.url(receiver, entry))[0] == 204  # the job ended meanwhile
    router.polls.later([entry], claim.now_us + 1_000_000)  # that poll saw it running
    assert router.redis.zscore(router.keys.polls, entry.member) == 0  # still due at once
