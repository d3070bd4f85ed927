"""uvicorn's httptools protocol with a deadline on each request head.

uvicorn closes a keep-alive connection that sends nothing after a response, but it waits
forever for the rest of a request head once any byte of one arrived, or for the first
byte on a new connection: a few hundred sockets that send half a head and stop would
hold every slot of the process. Here a connection gets `seconds` from when it opens, and
from the end of each response, to deliver a complete head; then it is answered 408 (if
it started one) or just closed (also if it still trickles the body of a request already
answered). Once a head is in, nothing here applies until its response is written: the
body has its own deadline (`router.api.body`) and a response is never cut short.

httptools (llhttp, Node's parser) rather than h11: it costs the process about half as
much CPU a request.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

TIMEOUT_TEXT = b"the request head did not arrive in time\n"
TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(TIMEOUT_TEXT), TIMEOUT_TEXT)
)


class HeadTimeoutProtocol(HttpToolsProtocol):
    """HttpToolsProtocol closing a connection whose request head is late; see the module."""

    head_timeout: float = 10.0
    """Seconds; set per server (`router.connections.capped_protocol`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_timer: asyncio.TimerHandle | None = None
        self.head_started = False
        """Part of a request head arrived, and not all of it yet."""

    # uvicorn's own signature, narrower than asyncio.Protocol's (an ignore there too)
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self.head_started = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self.head_started = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._arm()  # before the base class starts a request pipelined behind it
        super().on_response_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is another protocol's from here
        super().handle_websocket_upgrade()

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
        if self.head_started:
            self.transport.write(TIMEOUT_ANSWER)
        self._close()

    def _close(self) -> None:
        """End a connection that missed its deadline (a subclass may end it harder)."""
        self.transport.close()
