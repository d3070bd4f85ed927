"""Redis TLS (rediss://) and ACL users work from the URL, end to end, with no secret printed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from router.demo import stop_processes
from tests.servers import PrivateRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("openssl") is None,
    reason="needs redis-server and openssl",
)
PASSWORD = "CANARY-acl-pass-77"


def make_certs(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    make_certs(tmp_path)
    server = PrivateRedis(
        tmp_path,
        [
            "--port",
            "0",
            "--tls-port",
            "{port}",
            "--tls-cert-file",
            "server.crt",
            "--tls-key-file",
            "server.key",
            "--tls-ca-cert-file",
            "ca.crt",
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
        ],
        f"rediss://:{PASSWORD}@127.0.0.1:{{port}}/0?ssl_ca_certs={tmp_path / 'ca.crt'}",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(
        tmp_path,
        [
            "--port",
            "{port}",
            "--user",
            "default",
            "off",
            "--user",
            "router",
            "on",
            f">{PASSWORD}",
            "~*",
            "&*",
            "+@all",
        ],
        f"redis://router:{PASSWORD}@127.0.0.1:{{port}}/0",
    )
    server.start()
    yield server
    server.stop()


def round_trip(url: str, tmp_path: Path) -> None:
    """Add an account, run a worker, submit and wait: all through `url`."""
    env = {
        **os.environ,
        "BYOA_REDIS_URL": url,
        "BYOA_KEY_PREFIX": f"s{uuid.uuid4().hex[:8]}",
        "BYOA_SIM_SPEED": "1000",
    }

    def byoa(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "router", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    outputs = [byoa("accounts", "add", "a1", "--owner", "alice", "--plan", "pro")]
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "router", "--log-level", "DEBUG", "worker"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        outputs.append(
            byoa(
                "submit",
                "--owner",
                "alice",
                "--prompt",
                "x",
                "--mode",
                "fast",
                "--wait",
                "--timeout",
                "60",
                "--json",
            )
        )
    finally:
        stop_processes([worker])
    assert all(o.returncode == 0 for o in outputs), [o.stderr for o in outputs]
    assert '"status": "completed"' in outputs[-1].stdout
    texts = [o.stdout + o.stderr for o in outputs] + [log.read_text(errors="replace")]
    assert not any(PASSWORD in t for t in texts)


@pytest.mark.slow
def test_tls_url_works_end_to_end(tls_redis: PrivateRedis, tmp_path: Path) -> None:
    round_trip(tls_redis.url, tmp_path)


@pytest.mark.slow
def test_acl_user_url_works_end_to_end(acl_redis: PrivateRedis, tmp_path: Path) -> None:
    round_trip(acl_redis.url, tmp_path)


def test_wrong_acl_password_is_a_clear_error(acl_redis: PrivateRedis) -> None:
    url = acl_redis.url.replace(PASSWORD, "wrong-CANARY-guess")
    result = subprocess.run(
        [sys.executable, "-m", "router", "status"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "BYOA_REDIS_URL": url},
    )
    assert result.returncode == 1 and "error: redis_unreachable" in result.stderr
    assert "CANARY" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
