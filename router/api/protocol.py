"""uvicorn's h11 protocol with a deadline on each request head.

uvicorn closes a keep-alive connection that sends nothing after a response, but it waits
forever for the rest of a request head once any byte of one arrived, or for the first
byte on a new connection: a few hundred sockets that send half a head and stop would
hold every slot of the process. Here a connection gets `seconds` from when it opens, and
from the end of each response, to deliver a complete head; then it is answered 408 (if
it started one) or just closed (also if it still trickles the body of a request already
answered). Once a head is in, nothing here applies until its response is written: the
body has its own deadline (`router.api.body`) and a response is never cut short.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_ANSWER = (b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")
TIMEOUT_TEXT = b"the request head did not arrive in time\n"


class HeadTimeoutProtocol(H11Protocol):
    """H11Protocol closing a connection whose request head is late; see the module."""

    head_timeout: float = 10.0
    """Seconds; set by `head_timeout_protocol`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timer: asyncio.TimerHandle | None = None

    # uvicorn's own signature, narrower than asyncio.Protocol's (an ignore there too)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm()  # before the base class handles a request pipelined behind it
        super().on_response_complete()

    def handle_events(self) -> None:
        super().handle_events()
        if self._in_request():
            self._disarm()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the connection is another protocol's from here
        super().handle_websocket_upgrade(event)

    def _in_request(self) -> bool:
        """A head arrived and its response is not all written yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or self._in_request():
            return
        started = bool(self.conn.trailing_data[0])  # part of a head is waiting
        try:
            if started and self.conn.their_state is self.conn.our_state is h11.IDLE:
                headers = [*TIMEOUT_ANSWER, (b"content-length", str(len(TIMEOUT_TEXT)).encode())]
                response = h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
                self.transport.write(self.conn.send(response) or b"")
                self.transport.write(self.conn.send(h11.Data(data=TIMEOUT_TEXT)) or b"")
                self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
            self.conn.send(h11.ConnectionClosed())
        except h11.LocalProtocolError:
            pass  # h11 allows no answer in this state: just close
        self.transport.close()


def head_timeout_protocol(seconds: float) -> type[HeadTimeoutProtocol]:
    """The protocol class for uvicorn's `Config(http=...)`, giving each head `seconds`."""
    return type("HeadTimeoutProtocol", (HeadTimeoutProtocol,), {"head_timeout": seconds})
