"""Backend callbacks: a backend that can POST when a job changes is given a signed URL on
a router's HTTP port, and a verified POST makes that job's next poll due at once.

A callback is a hint, never a verdict: its body is read and thrown away, and nothing is
settled from it. The poller then asks the backend and settles the job as it settles any
(`workers.poller`), so a forged or replayed callback can at most cause one early poll,
and one that never comes costs only the wait for the next regular poll.

The URL names one attempt at a task, `<base>/hooks/job/<owner>/<task>/<attempt>/<sig>`,
where `sig` is an HMAC-SHA256 of `<owner>/<task>/<attempt>` under a secret that the first
process needing it creates in Redis (`Keys.callback_secret`): operators configure only
the base URL (`callback_url`). A signature is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from redis import Redis
from redis.exceptions import RedisError

from router.keys import Keys
from router.models import ID_RE
from router.polls import Entry, Polls
from router.shared_secret import SharedSecret

if TYPE_CHECKING:
    from router.core import Router

log = logging.getLogger(__name__)

PATH = "/hooks/job/"
"""Where callbacks arrive on a router's HTTP port."""
SIG_CHARS = 32
"""Hex characters of the HMAC kept in a URL (128 bits)."""
ATTEMPT_RE = re.compile(r"[1-9][0-9]{0,8}")
SIG_RE = re.compile(f"[0-9a-f]{{{SIG_CHARS}}}")
LENGTH_RE = re.compile(r"[0-9]{1,15}")
RESULTS = ("accepted", "bad_signature", "malformed")
"""What became of a request to PATH (`byoa_callbacks_total{result}`)."""
MAX_BODY = 64 << 10
"""Largest callback body read; a larger one is refused (413). Both servers POST the task's
JSON, a few kB."""


@dataclass(frozen=True)
class Hook:
    """A callback path as parsed: the attempt it names and the signature it carries."""

    entry: Entry
    sig: str

    @classmethod
    def parse(cls, path: str) -> Hook | None:
        """The hook a request path names, or None if it is not one (checked by the same
        rules as ids before any of it goes near Redis)."""
        if not path.startswith(PATH):
            return None
        parts = path[len(PATH) :].split("/")
        if len(parts) != 4:
            return None
        owner, task_id, attempt, sig = parts
        if not (ID_RE.fullmatch(owner) and ID_RE.fullmatch(task_id)):
            return None
        if not (ATTEMPT_RE.fullmatch(attempt) and SIG_RE.fullmatch(sig)):
            return None
        return cls(Entry(owner, task_id, int(attempt)), sig)


class Callbacks:
    """Signs and checks callback URLs for one key prefix; pokes the poll schedule."""

    def __init__(self, redis: Redis, keys: Keys, polls: Polls) -> None:
        self.redis, self.keys, self.polls = redis, keys, polls
        self.secret = SharedSecret(redis, keys.callback_secret)

    @staticmethod
    def _mac(secret: bytes, entry: Entry) -> str:
        digest = hmac.new(secret, entry.member.encode(), hashlib.sha256).hexdigest()
        return digest[:SIG_CHARS]

    def sign(self, entry: Entry) -> str:
        """The signature of one attempt's callback URL."""
        return self._mac(self.secret.cached(), entry)

    def url(self, base: str, entry: Entry) -> str:
        """The URL a backend POSTs to when this attempt's job changes."""
        parts = (entry.owner, entry.task_id, str(entry.attempt), self.sign(entry))
        return base.rstrip("/") + PATH + "/".join(quote(p, safe="") for p in parts)

    def verify(self, hook: Hook) -> bool:
        """Whether the hook's signature is this prefix's for its attempt. A mismatch is
        checked again against the secret as Redis holds it now (it may have been made
        anew since this process read it)."""
        if hmac.compare_digest(self._mac(self.secret.cached(), hook.entry), hook.sig):
            return True
        return hmac.compare_digest(self._mac(self.secret.fresh(), hook.entry), hook.sig)

    def receive(self, hook: Hook) -> str:
        """`accepted`: the hook is signed, and its attempt's poll is now due (if it is
        still scheduled: a settled, taken back or unknown attempt gets no entry), else
        `bad_signature`."""
        if not self.verify(hook):
            return "bad_signature"
        self.polls.later([hook.entry], 0)
        return "accepted"


def screen(method: str, path: str, length: str | None) -> Hook | tuple[str, str]:
    """What a request to PATH is before its body is read: the hook it names, or the HTTP
    status refusing it and its result for the metric. `length` is its Content-Length
    header (None: it sent none)."""
    hook = Hook.parse(path)
    if hook is None:
        return "404 Not Found", "malformed"
    if method != "POST":
        return "405 Method Not Allowed", "malformed"
    length = (length or "0").strip()
    if not LENGTH_RE.fullmatch(length):
        return "400 Bad Request", "malformed"
    if int(length) > MAX_BODY:
        return "413 Content Too Large", "malformed"
    return hook


def answer(callbacks: Callbacks, hook: Hook) -> tuple[str, str | None]:
    """The HTTP status answering a screened hook whose body (at most MAX_BODY bytes) was
    taken off the connection and thrown away unparsed (nothing in it is trusted), and its
    result for the metric (None: not counted, Redis was away)."""
    try:
        result = callbacks.receive(hook)
    except RedisError as e:  # the backend's POST fails; the job is polled as ever
        log.warning("a callback could not be checked: Redis %s", type(e).__name__)
        return "503 Service Unavailable", None
    return ("204 No Content" if result == "accepted" else "403 Forbidden"), result


_of: weakref.WeakKeyDictionary[Router, Callbacks] = weakref.WeakKeyDictionary()
_of_lock = threading.Lock()


def of(router: Router) -> Callbacks:
    """The callbacks of a router: one per router, so that a process reads the secret at
    most once per `shared_secret.CACHE_SECONDS`."""
    with _of_lock:
        found = _of.get(router)
        if found is None:
            found = _of[router] = Callbacks(router.redis, router.keys, router.polls)
        return found
