"""One HTTP call to a midjourney-proxy server: what it answered, or the driver error its
failure stands for. No redirect is followed (it would carry the secret elsewhere), and no
text of a library's exception is passed on (it may quote the secret)."""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from router.driver import AccountNeedsAttention, DriverError, TransientError

SECRET_HEADER = "mj-api-secret"
"""novicezk reads only this header (Constants.java:19); trueai reads `Authorization`, else
this one (src/Midjourney.API/WorkContext.cs:46-48), compared as sent."""
MAX_BODY = 4 << 20
"""Largest answer read (a task with its buttons is a few kB)."""
SENDABLE_SECRET = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""A secret that can go in a header as it is: printable ASCII, no white space around it."""


@dataclass(frozen=True)
class Backend:
    """Where one account's proxy answers, the secret it wants, and which server it is."""

    url: str
    secret: SecretStr | None = field(repr=False)
    server: str | None = None
    """`trueai` or `novicezk` where the operator said; None: ask the server."""


class NotTaken(TransientError):
    """The proxy surely did not take the request: the connection was refused or the name
    did not resolve (nothing was sent), or a middleware answered before any controller ran:
    trueai's rate limiter answers 429, or 403 with an empty body for a blacklisted address
    (src/Midjourney.API/RateLimitingMiddleware.cs:93-145, after SimpleAuthMiddleware, whose
    own 401/403 carry a text: SimpleAuthMiddleware.cs:86-121; Program.cs:409-417)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the secret header to another URL: refuse it."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def request(
    backend: Backend,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    timeout: float,
    refused: type[DriverError] = AccountNeedsAttention,
    max_body: int = MAX_BODY,
) -> tuple[int, Any]:
    """One call to the proxy: (HTTP status, JSON answer or None for an empty body). Raises
    TransientError (unreachable, timeout, 5xx, an answer that is not JSON; NotTaken when
    surely nothing was sent or taken) or `refused` when the secret is refused.

    401 comes from the servers' authorisation before any controller runs: novicezk's
    `ApiAuthorizeInterceptor.preHandle` answers 401 with no body and stops the request
    (support/ApiAuthorizeInterceptor.java:21-29); trueai's `SimpleAuthMiddleware` answers
    401 "Authorization header missing." or 403 "账号不可用" and returns without calling the
    next handler (src/Midjourney.API/SimpleAuthMiddleware.cs:86-121)."""
    headers = {"Accept": "application/json"}
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    if backend.secret is not None:
        secret = backend.secret.get_secret_value()
        if not SENDABLE_SECRET.fullmatch(secret):  # http.client would quote it refusing it
            raise refused(
                "the account's secret cannot be sent in a header (it holds a line break, "
                "a control or non-ASCII character, or white space around it); store it again"
            )
        headers[SECRET_HEADER] = secret
    call = urllib.request.Request(backend.url + path, data, headers, method=method)
    try:
        try:
            with _OPENER.open(call, timeout=timeout) as r:
                status, raw = r.status, r.read(max_body + 1)
        except urllib.error.HTTPError as e:
            with e:
                status, raw = e.code, e.read(max_body + 1)
    except (OSError, http.client.HTTPException) as e:  # URLError and timeouts included
        reason = getattr(e, "reason", None)  # named by class: we did not write its text
        name = type(reason if isinstance(reason, BaseException) else e).__name__
        failed = f"{method} {path}: backend unreachable ({name})"
        # urllib wraps what fails while connecting and sending in a URLError, and lets
        # what fails awaiting the answer through as it is: only a refused connection or
        # an unknown name surely sent nothing (a timeout may come after the request).
        unsent = isinstance(e, urllib.error.URLError) and isinstance(
            reason, ConnectionRefusedError | socket.gaierror
        )
    else:
        failed, unsent = "", False
    if failed:  # raised here, so the library's exception is not even its __context__
        raise (NotTaken if unsent else TransientError)(failed)
    if status == 429 or (status == 403 and not raw.strip()):
        raise NotTaken(f"{method} {path}: backend answered HTTP {status} (rate limited)")
    if status >= 500:
        raise TransientError(f"{method} {path}: backend answered HTTP {status}")
    if status in (401, 403):
        raise refused(f"the backend refused the account's secret (HTTP {status})")
    if 300 <= status < 400:
        raise DriverError(f"{method} {path}: backend redirects; set backend_url to the target")
    if len(raw) > max_body:
        raise TransientError(f"{method} {path}: the answer is over {max_body} bytes")
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        raise TransientError(f"{method} {path}: backend answered no JSON") from None
