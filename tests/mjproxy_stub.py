"""`StubProxy`: a midjourney-proxy server for tests, as a faithful model of one of the two
real servers (tests/proxy_models): trueai-org/midjourney-proxy v11.10.3 (the default) or
novicezk/midjourney-proxy v2.6.3, fronting one Midjourney account.

Prompt keywords script what Midjourney does and what the transport does: `slow` (the proxy
takes the request late), `late` (it answers late), `long` (Midjourney runs ten minutes),
`stuck` (Midjourney never finishes: the proxy's timeout fails it), `outoffast` and
`cnexhausted` (a fast or turbo job meets "Credits exhausted"), `banned` ("Blocked"),
`modnotice` ("Pending mod message"), `captcha`, `oops` ("Invalid parameter"), `mjqueuefull`
(Midjourney's "Queue full"), `badprompt` (on the proxy's banned-word list), `queuefull` (the
account's queue is full), `race9` (code 9: trueai loses its enqueue race, novicezk's
executor throws), `servererror` (HTTP 500).
"""

from __future__ import annotations

from typing import Any, Literal

from tests.proxy_models import NovicezkModel, TrueAiModel


class StubProxy:
    """A context manager serving `.url`; every other attribute is the model's (`requests`,
    `sent(path)`, `tasks`, account state), read and set through this object.

    `buttons=False` (the old "proxy without buttons") means server="novicezk", which has
    none; novicezk takes no `auto_relax` or `admin_secret` (it has neither)."""

    model: TrueAiModel | NovicezkModel
    server: str
    """Which server the model is: `trueai` or `novicezk`."""

    def __init__(
        self,
        server: Literal["trueai", "novicezk"] = "trueai",
        secret: str | None = "stub-secret",
        run_ms: int = 50,
        slow_seconds: float = 2.0,
        list_failures: int = 0,
        buttons: bool | None = None,
        fast_jobs: int = 1000,
        auto_relax: bool = True,
        admin_secret: str | None = None,
    ) -> None:
        if buttons is False:
            server = "novicezk"
        elif buttons and server == "novicezk":
            raise ValueError("novicezk/midjourney-proxy reports no buttons")
        model: TrueAiModel | NovicezkModel
        if server == "trueai":
            model = TrueAiModel(
                secret, run_ms, slow_seconds, list_failures, fast_jobs, auto_relax, admin_secret
            )
        else:
            model = NovicezkModel(secret, run_ms, slow_seconds, list_failures, fast_jobs)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "server", server)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.model, name, value)

    def __enter__(self) -> StubProxy:
        self.model.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.model.__exit__(*exc)
