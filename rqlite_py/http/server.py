"""The HTTP server: uvicorn (HTTP parsing in C by httptools, an event loop
from uvloop) in front of the synchronous App.

Why not a WSGI server: measured on this project's 2-core machine (docs/
DESIGN.md, "HTTP"), Flask on cheroot served 2,300 no-op requests/s
and raw WSGI on waitress 4,800, while uvicorn with a thread-pool hop per
request served 18,600. Every write and read pays this cost, so it bounds
everything else.

The event loop mostly moves bytes: each request is read whole (up to the
body limit), handed to a worker thread (App.handle blocks while a write goes
through the log), and its reply is written back; a streamed reply (backup)
is pulled chunk by chunk on a worker thread too. The exceptions are the
commonest requests. A write on the leader is proposed from the loop and its
future awaited there (App.begin/finish), which saves two thread hand-overs
per write (about 300 us at one client, traced). A read is served from the
loop if it is brief (a step limit; a linearizable one first awaits its read
index there), and goes on to a worker only if it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .. import tls
from .app import App
from .db_api import Begun
from .messages import HttpError, Reply, Request

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KEEP_ALIVE_S = 75  # clients keep pooled connections; Go's server keeps them too
MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
HEADER_TIMEOUT_S = 10.0
"""A request's line and headers must arrive within this (slowloris)."""
BODY_IDLE_S = 30.0
"""A body may pause this long between chunks, no longer."""
SWEEP_S = 1.0
_DONE = object()


class Asgi:
    """The ASGI application uvicorn calls."""

    def __init__(self, app: App, workers: ThreadPoolExecutor) -> None:
        self.app = app
        self.workers = workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        req = Request(
            method=scope["method"],
            path=scope["path"],
            query_string=scope["query_string"].decode("latin-1"),
            headers=headers,
        )
        loop = asyncio.get_running_loop()
        try:
            req.body = await self._read_body(headers, receive)
        except HttpError as e:
            # Answered without reading the rest; uvicorn closes the connection.
            reply = self.app.error_reply(e, req)
        except ConnectionError:
            return
        else:
            begun = self.app.begin(req)
            if begun is None:
                reply = await loop.run_in_executor(self.workers, self.app.handle, req)
            else:
                reply = await self._finish(begun, req, loop)
        await self._send(reply, send, loop)
        self.app.observe(req, reply.status, time.perf_counter() - start)

    async def _finish(self, begun: Begun, req: Request, loop: asyncio.AbstractEventLoop) -> Reply:
        """Wait for a request begun on the loop (no thread blocked meanwhile);
        shielded, so that a timeout never cancels the Raft loop's future."""
        if begun.future is not None:
            waiting = asyncio.wrap_future(begun.future)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(waiting), begun.timeout_s)
        try:
            reply = self.app.finish(begun)
        except Exception as e:
            return await loop.run_in_executor(self.workers, self.app.error_reply, e, req)
        if reply is None:
            return await loop.run_in_executor(self.workers, self.app.finish_slow, begun, req)
        return reply

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        limit = self.app.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HttpError(413)
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ConnectionError("client went away")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HttpError(413)
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return b"".join(chunks)

    async def _send(self, reply: Reply, send: Send, loop: asyncio.AbstractEventLoop) -> None:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        if reply.content_type:
            headers.append((b"content-type", reply.content_type.encode("latin-1")))
        body = reply.body
        if isinstance(body, bytes):
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        chunks: Iterator[bytes] = body
        try:
            while (chunk := await loop.run_in_executor(self.workers, next, chunks, _DONE)) is not (
                _DONE
            ):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                await loop.run_in_executor(self.workers, close)


class HttpServer:
    """Listens on `addr` at construction (so a busy port fails at once),
    serves on its own thread after `start`, stops gracefully: in-flight
    requests finish within `shutdown_timeout_s`."""

    def __init__(
        self,
        addr: tuple[str, int],
        app: App,
        *,
        max_threads: int,
        shutdown_timeout_s: float,
        backlog: int = 1024,
        ssl_context: ssl.SSLContext | None = None,
        client_common_name: str = "",
    ) -> None:
        """With `ssl_context`, HTTPS only. With `client_common_name`, a
        client whose certificate names anyone else is disconnected once the
        handshake is done (-http-verify-common-name)."""
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(addr)
            self._sock.listen(backlog)
        except OSError:
            self._sock.close()
            raise
        self.workers = ThreadPoolExecutor(max_threads, thread_name_prefix="http")
        config = uvicorn.Config(
            Asgi(app, self.workers),
            loop="uvloop",
            http=_protocol(client_common_name),
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            proxy_headers=False,
            headers=[("Server", "rqlite-py")],
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=shutdown_timeout_s,
            backlog=backlog,
            ssl_context_factory=None if ssl_context is None else lambda _cfg, _default: ssl_context,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:  # noqa: BLE001 - a dead HTTP server must be loud
            log.critical("HTTP server stopped: %s", e, exc_info=True)

    def stop(self, timeout_s: float) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self.workers.shutdown(wait=False, cancel_futures=True)


def _protocol(client_common_name: str) -> type[HttpToolsProtocol]:
    """uvicorn's protocol, with limits it lacks: headers of at most
    MAX_HEADER_BYTES, which must arrive within HEADER_TIMEOUT_S, and a body
    that must keep moving (BODY_IDLE_S between chunks). A connection that
    breaks them is answered 400 (too large) or closed (too slow): slow
    clients cannot hold connections, nor large headers memory, for ever.
    With `client_common_name`, a client whose certificate names anyone else
    is disconnected once the handshake is done: Python's ssl has no hook to
    refuse it inside the handshake, and nothing is read from it."""

    class Protocol(HttpToolsProtocol):
        _deadline = math.inf
        _header_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline = self.loop.time() + HEADER_TIMEOUT_S  # the first request's headers
            _watch(self.loop, self.server_state)
            if client_common_name:
                name = tls.common_name(transport.get_extra_info("peercert"))
                if name != client_common_name:
                    log.warning("refusing an HTTPS client whose certificate names %r", name)
                    transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._deadline = self.loop.time() + HEADER_TIMEOUT_S

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._deadline = self.loop.time() + BODY_IDLE_S

        def on_body(self, body: bytes) -> None:
            super().on_body(body)
            self._deadline = self.loop.time() + BODY_IDLE_S

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._deadline = math.inf  # the app's turn; then uvicorn's keep-alive timeout

        def _count(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > MAX_HEADER_BYTES:
                # httptools answers a callback's error as a bad request: 400, closed.
                raise httptools.HttpParserCallbackError("request headers too large")

        def expired(self, now: float) -> bool:
            return now > self._deadline

        def shutdown(self) -> None:
            """An idle HTTPS connection is aborted at a stop, not closed:
            closing waits for the client's TLS close_notify, which a client
            idling on a pooled connection never sends, and every stop of
            an HTTPS node then took uvicorn's whole grace period (10 s).
            Nothing is lost: no request is in flight on it."""
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self.transport.get_extra_info("sslcontext") is not None:
                self.transport.abort()
                return
            super().shutdown()

    return Protocol


def _watch(loop: asyncio.AbstractEventLoop, state: Any) -> None:
    """Once per server: every second, close the connections that are past
    their deadline (a sweep costs one float per request, where a timer per
    request would cost a heap operation each). `state` is uvicorn's
    ServerState, which holds the server's connections."""
    if getattr(state, "rqlite_sweeping", False):
        return
    state.rqlite_sweeping = True
    connections = state.connections

    def sweep() -> None:
        now = loop.time()
        for conn in list(connections):
            expired = getattr(conn, "expired", None)
            if expired is not None and expired(now) and not conn.transport.is_closing():
                log.info("closing a slow HTTP connection from %s", conn.client)
                conn.transport.close()
        if not loop.is_closed():
            loop.call_later(SWEEP_S, sweep)

    loop.call_later(SWEEP_S, sweep)
