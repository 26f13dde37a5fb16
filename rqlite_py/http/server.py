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
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
_DONE = object()


class Asgi:
    """The ASGI application uvicorn calls."""

    def __init__(self, app: App, workers: ThreadPoolExecutor) -> None:
        self.app = app
        self.workers = workers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
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
            http=_checking_common_name(client_common_name) if client_common_name else "httptools",
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


def _checking_common_name(expected: str) -> type[HttpToolsProtocol]:
    """uvicorn's protocol, closing connections whose client certificate's
    common name is not `expected`. Python's ssl has no hook to refuse it
    inside the handshake; the connection is made only once the handshake is
    done, so nothing is read from such a client."""

    class Checked(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            name = tls.common_name(transport.get_extra_info("peercert"))
            if name != expected:
                log.warning("refusing an HTTPS client whose certificate names %r", name)
                transport.close()

    return Checked
