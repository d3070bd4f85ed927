"""A tenant's webhook reaches only what the operator allows: public addresses, and the
networks in `webhook_allowed_networks`. Refused at submit when the URL names an address
(in any notation), refused at delivery when a name resolves to one, and connected to the
address that was checked. No packet leaves this host: decisions about other addresses are
checked without connecting, deliveries go to loopback receivers the setting admits."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.addresses import Address, endpoint_refusal, is_public, literal, parse_networks
from router.apikeys import ApiKeys
from router.client import Client
from router.core import Router
from router.daemon import IntakeDaemon
from router.errors import TaskRejected
from router.settings import Settings
from tests.conftest import LOOPBACK, allow_loopback_webhooks, wait_for
from tests.servers import SECRET, Endpoint
from tests.test_redis_security import make_certs
from workers.webhook_post import REFUSED, TIMEOUT, Poster

AddAccount = Callable[..., None]
Drain = Callable[[], None]

INTERNAL = [
    # (URL host as a tenant writes it, what it denotes)
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0x7f.0.0.1", "127.0.0.1"),  # hex
    ("0x7f000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # short form
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot
    ("0", "0.0.0.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("[::1]", "::1"),
    ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),  # IPv4-mapped IPv6
    ("[::ffff:7f00:1]", "::ffff:7f00:1"),
    ("[0:0:0:0:0:ffff:a9fe:a9fe]", "::ffff:169.254.169.254"),
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata
    ("10.0.0.1", "10.0.0.1"),
    ("172.16.5.4", "172.16.5.4"),
    ("192.168.1.1", "192.168.1.1"),
    ("100.64.0.1", "100.64.0.1"),  # carrier NAT
    ("224.0.0.1", "224.0.0.1"),  # multicast
    ("255.255.255.255", "255.255.255.255"),
    ("[fe80::1]", "fe80::1"),  # link local
    ("[fc00::1]", "fc00::1"),  # unique local
    ("[64:ff9b::a00:1]", "64:ff9b::a00:1"),  # NAT64 of 10.0.0.1
    # Local-use NAT64 (64:ff9b:1::/48): its prefix length is the operator's, so its low
    # bits may read public (1.8.8.8) while the host reached is 10.0.0.1 (/64 layout).
    ("[64:ff9b:1:0:a:0:108:808]", "64:ff9b:1:0:a:0:108:808"),
    ("[64:ff9b:1::808:808]", "64:ff9b:1::808:808"),
    ("[2002:7f00:1::]", "2002:7f00:1::"),  # 6to4 of 127.0.0.1
    ("[2001:db8::1]", "2001:db8::1"),  # documentation
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "[2606:4700::1111]", "[64:ff9b::808:808]", "1.1.1.1."]


@pytest.mark.parametrize(("host", "means"), INTERNAL)
def test_every_notation_of_an_internal_address_is_read_as_that_address(
    host: str, means: str
) -> None:
    address = literal(host.strip("[]"))
    assert address == ip_address(means)
    assert not is_public(address)
    assert endpoint_refusal(host.strip("[]"), []) is not None


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_are_allowed_at_submit(host: str) -> None:
    address = literal(host.strip("[]"))
    assert address is not None and is_public(address)
    assert endpoint_refusal(host.strip("[]"), []) is None


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "api.localhost"])
def test_loopback_names_are_refused_at_submit(host: str) -> None:
    assert endpoint_refusal(host, []) is not None
    assert endpoint_refusal(host, parse_networks(LOOPBACK)) is None


@pytest.mark.parametrize("host", ["999.1.1.1", "1.2.3.4.5", "08.1.1.1", "0x"])
def test_a_host_that_looks_like_an_address_but_is_none_is_refused(host: str) -> None:
    assert "looks like an IPv4 address" in (endpoint_refusal(host, []) or "")


def test_names_are_left_for_the_delivery_to_judge() -> None:
    for host in ("example.com", "metadata.google.internal", "1x.example", "a.0x7f.example"):
        assert literal(host) is None and endpoint_refusal(host, []) is None


def test_allowed_networks_admit_their_addresses_only() -> None:
    networks = parse_networks("10.0.0.0/8, 127.0.0.1")
    assert endpoint_refusal("10.200.0.1", networks) is None
    assert endpoint_refusal("127.0.0.1", networks) is None
    assert endpoint_refusal("::ffff:127.0.0.1", networks) is None  # mapped: as its IPv4
    assert endpoint_refusal("127.0.0.2", networks) is not None
    assert endpoint_refusal("192.168.0.1", networks) is not None


def test_the_setting_is_comma_separated_cidrs_and_a_bad_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BYOA_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8,127.0.0.0/8, ::1/128")
    assert [str(n) for n in Settings().webhook_allowed_networks] == [
        "10.0.0.0/8",
        "127.0.0.0/8",
        "::1/128",
    ]
    monkeypatch.setenv("BYOA_WEBHOOK_ALLOWED_NETWORKS", "")
    assert Settings().webhook_allowed_networks == []
    monkeypatch.setenv("BYOA_WEBHOOK_ALLOWED_NETWORKS", "10.0.0.0/8,intranet")
    with pytest.raises(ValueError, match="'intranet' is not a network"):
        Settings()


# Every door refuses an internal address at submit, naming its field.


def test_the_client_refuses_an_internal_endpoint(client: Client, add_account: AddAccount) -> None:
    add_account("a-pro", "alice", "pro")
    for host in ("2130706433", "[::ffff:127.0.0.1]", "169.254.169.254", "localhost"):
        with pytest.raises(TaskRejected) as e:
            client.submit("alice", "a cat", webhook={"endpoint": f"http://{host}/h"})
        assert e.value.code == "invalid_task" and "webhook.endpoint" in str(e.value)
        assert "not a public address" in str(e.value)


def test_the_intake_list_stores_the_refusal_and_tells_no_endpoint(
    router: Router, client: Client, add_account: AddAccount, drain: Drain
) -> None:
    add_account("a-pro", "alice", "pro")
    hook = {"endpoint": "http://0x7f.1:9/h", "secret": SECRET}
    router.redis.lpush(
        router.keys.intake, json.dumps({"id": "in-1", "owner": "alice", "webhook": hook})
    )
    daemon = IntakeDaemon(router)
    daemon.handle(daemon.claim())
    task = client.get("in-1")
    assert task is not None and task.status == "failed" and task.error is not None
    assert task.error.code == "invalid_task" and "webhook.endpoint" in task.error.message
    assert task.webhook_endpoint is None  # nothing to tell
    assert router.redis.zcard(router.keys.outbox("alice")) == 0


@pytest.fixture
def alice_key(router: Router, add_account: AddAccount) -> str:
    add_account("a-pro", "alice", "pro")
    return ApiKeys(router.redis, router.scripts).create("alice", "t")[1].get_secret_value()


def test_the_task_api_answers_400_naming_its_field(http: httpx.Client, alice_key: str) -> None:
    for host in ("0177.0.0.1", "[::1]", "10.1.2.3"):
        body = {
            "task_type": "imagine",
            "model": "midjourney",
            "input": {"prompt": "a cat"},
            "config": {"webhook_config": {"endpoint": f"http://{host}/h", "secret": "s"}},
        }
        r = http.post("/api/v1/task", json=body, headers={"x-api-key": alice_key})
        assert r.status_code == 400, r.text
        assert "invalid_task" in r.text
        assert "config.webhook_config.endpoint" in r.text and "not a public address" in r.text


def test_the_midjourney_proxy_api_refuses_naming_notify_hook(
    http: httpx.Client, alice_key: str
) -> None:
    body = {"prompt": "a cat", "notifyHook": "http://[::ffff:169.254.169.254]/latest"}
    r = http.post("/mj/submit/imagine", json=body, headers={"mj-api-secret": alice_key})
    answer = r.json()
    assert answer["code"] != 1 and answer["result"] is None, answer
    assert "notifyHook" in answer["description"] and "not a public" in answer["description"]


# At delivery: the name is resolved once, every address checked, the checked one connected.


class Recorder:
    """A resolver and a connector that record what they were asked."""

    def __init__(self, answers: Sequence[Sequence[str]]) -> None:
        self.answers = [[ip_address(a) for a in answer] for answer in answers]
        self.lookups: list[str] = []
        self.connects: list[str] = []

    def resolve(self, host: str, port: int) -> list[Address]:
        self.lookups.append(host)
        return list(self.answers[min(len(self.lookups), len(self.answers)) - 1])

    def connect(self, address: tuple[str, int], timeout: float) -> socket.socket:
        self.connects.append(address[0])
        if not ip_address(address[0]).is_loopback:  # never a packet beyond this host
            raise AssertionError(f"connected to {address[0]}")
        return socket.create_connection(address, timeout=timeout)


def _post(poster: Poster, url: str, timeout: float = 5.0) -> str:
    return poster.post(url, {"content-type": "application/json"}, b"{}", timeout)


def test_a_name_resolving_to_loopback_is_refused_without_a_connection() -> None:
    seen = Recorder([["127.0.0.1"]])
    poster = Poster([], seen.resolve, seen.connect)
    assert _post(poster, "http://rebind.example:8080/h") == REFUSED
    assert seen.lookups == ["rebind.example"] and seen.connects == []


def test_one_internal_answer_among_public_ones_refuses_the_name() -> None:
    seen = Recorder([["93.184.216.34", "10.0.0.5"]])
    poster = Poster([], seen.resolve, seen.connect)
    assert _post(poster, "https://mixed.example/h") == REFUSED
    assert seen.connects == []


def test_the_connection_goes_to_the_checked_address_not_a_second_answer(
    endpoint: Endpoint,
) -> None:
    """The name answers 127.0.0.1 (allowed here) first and 10.0.0.1 after: the POST goes
    to 127.0.0.1 and the name is looked up once."""
    port = endpoint.server.server_port
    seen = Recorder([["127.0.0.1"], ["10.0.0.1"]])
    poster = Poster(parse_networks("127.0.0.0/8"), seen.resolve, seen.connect)
    assert _post(poster, f"http://changing.example:{port}/rebind") == ""
    assert seen.lookups == ["changing.example"] and seen.connects == ["127.0.0.1"]
    (hit,) = endpoint.to("/rebind")
    assert hit.headers["host"] == f"changing.example:{port}"  # the name, as the URL said


def test_the_first_answer_internal_and_the_second_public_is_still_refused() -> None:
    seen = Recorder([["10.0.0.1"], ["93.184.216.34"]])
    poster = Poster([], seen.resolve, seen.connect)
    assert _post(poster, "http://changing.example/h") == REFUSED
    assert seen.lookups == ["changing.example"] and seen.connects == []


def test_localhost_resolved_by_this_host_is_refused_then_allowed_by_the_setting(
    endpoint: Endpoint,
) -> None:
    url = f"http://localhost:{endpoint.server.server_port}/local"
    assert _post(Poster([]), url) == REFUSED
    assert endpoint.to("/local") == []
    assert _post(Poster(parse_networks(LOOPBACK)), url) == ""
    assert len(endpoint.to("/local")) == 1


def test_an_address_in_the_url_is_checked_without_a_lookup() -> None:
    seen = Recorder([["93.184.216.34"]])
    poster = Poster([], seen.resolve, seen.connect)
    assert _post(poster, "http://2130706433:9/h") == REFUSED
    assert _post(poster, "http://[::ffff:127.0.0.1]:9/h") == REFUSED
    assert seen.lookups == [] and seen.connects == []


def test_a_stored_internal_endpoint_fails_its_webhook_once_and_posts_nothing(
    router: Router, add_account: AddAccount, drain: Drain, endpoint: Endpoint
) -> None:
    """A task accepted while the operator allowed loopback (or stored by an earlier
    release) is delivered by workers that no longer allow it: refused for good at delivery,
    no retries, and the endpoint saw nothing."""
    add_account("a-pro", "alice", "pro")
    allowing = Client(allow_loopback_webhooks(router.settings), router.redis)
    hook = {"endpoint": f"{endpoint.url}/x", "secret": SECRET}
    task = allowing.submit("alice", "a cat", mode="fast", webhook=hook)
    drain()  # workers with the setting empty (the environment of this test)
    done = allowing.get(task.id)
    assert done is not None and done.status == "completed"
    assert (done.webhook_status, done.webhook_error, done.webhook_attempts) == (
        "failed",
        REFUSED,
        1,
    )
    assert endpoint.hits == []


# One deadline for the whole POST.


class Trickler:
    """A loopback server that reads each request, then sends its answer a byte at a time,
    every `every` seconds, never finishing: a per-read timeout never fires on it."""

    def __init__(self, every: float = 0.1, head: bytes = b"HTTP/1.1 200 OK\r\nX-Slow: ") -> None:
        self.head = head
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.every = every
        self.connections = 0
        self.cut = threading.Event()
        """Set when a client shut its connection."""
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            try:
                for byte in self.head + b"a" * 100_000:
                    if self.stop.wait(self.every):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                self.cut.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def test_an_endpoint_trickling_its_answer_is_cut_at_the_deadline() -> None:
    slow = Trickler()
    poster = Poster(parse_networks(LOOPBACK))
    result: list[str] = []
    thread = threading.Thread(
        target=lambda: result.append(_post(poster, f"http://127.0.0.1:{slow.port}/", 1.0))
    )
    thread.start()
    thread.join(30)  # a per-read timeout would let it trickle for hours
    assert not thread.is_alive() and result == [TIMEOUT]
    wait_for(slow.cut.is_set, 10, "the trickling connection to be shut")
    slow.close()


def test_a_lookup_that_never_answers_times_the_post_out() -> None:
    never = threading.Event()

    def hang(host: str, port: int) -> list[Address]:
        never.wait(60)
        return []

    poster = Poster([], hang)
    try:
        assert _post(poster, "http://slow-dns.example/", 0.5) == TIMEOUT
    finally:
        never.set()


class TlsReceiver:
    """An HTTPS endpoint on 127.0.0.1 with a certificate of a test CA (`ca`)."""

    def __init__(self, workdir: Path, hold: threading.Event | None = None) -> None:
        make_certs(workdir)
        self.ca = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
        self.hits: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                endpoint.hits.append(self.headers["host"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(workdir / "server.crt", workdir / "server.key")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[TlsReceiver]:
    endpoint = TlsReceiver(tmp_path)
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_https_is_posted_over_tls_checked_against_the_url_host(tls_receiver: TlsReceiver) -> None:
    networks = parse_networks(LOOPBACK)
    trusting = Poster(networks, tls=tls_receiver.ca)
    assert _post(trusting, f"{tls_receiver.url}/h") == ""
    assert tls_receiver.hits == [f"127.0.0.1:{tls_receiver.server.server_port}"]
    assert _post(Poster(networks), f"{tls_receiver.url}/h") == "SSLCertVerificationError"
    assert len(tls_receiver.hits) == 1  # an unknown CA's certificate: nothing sent


def test_a_tls_handshake_that_never_completes_is_cut_at_the_deadline() -> None:
    """The server's first TLS record announces 16,128 bytes and trickles them: the
    handshake waits for the whole record, and only the deadline ends it."""
    slow = Trickler(every=0.05, head=b"\x16\x03\x03\x3f\x00")
    try:
        url = f"https://127.0.0.1:{slow.port}/"
        assert _post(Poster(parse_networks(LOOPBACK)), url, 1.0) == TIMEOUT
    finally:
        slow.close()


def test_a_name_with_no_address_fails_as_one_refused_so_internal_names_stay_unknown() -> None:
    """Whether a name exists inside is not told by the webhook's outcome: no address at
    all is refused just as an internal one is (and for good: trying again won't help)."""

    def missing(host: str, port: int) -> list[Address]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    def down(host: str, port: int) -> list[Address]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    internal = Recorder([["10.1.2.3"]])
    assert _post(Poster([], internal.resolve, internal.connect), "http://db.corp/h") == REFUSED
    assert _post(Poster([], missing), "http://nope.corp/h") == REFUSED
    assert _post(Poster([], lambda h, p: []), "http://empty.corp/h") == REFUSED
    assert _post(Poster([], down), "http://later.example/h") == "gaierror"  # retried later
