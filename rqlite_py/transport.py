"""Node-to-node messages over TCP on the Raft port (frames: wire.py).

Raft messages travel one way over one persistent connection per peer, fed
by a bounded queue and a sender thread: a slow or dead peer only ever loses
its own (stale) messages, never blocks the Raft loop or the other peers, and
never grows memory without bound. Raft tolerates the loss; the core retries.

Control calls (join, remove, node metadata) are short request/answer
exchanges on their own connection, so they never queue behind Raft traffic.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable

from . import wire
from .raft.types import Message, NodeId

log = logging.getLogger(__name__)

QUEUE_MAX = 4096
"""Messages waiting for one peer; beyond this the oldest are dropped."""
IDLE_TIMEOUT_S = 300.0
"""An inbound connection silent this long is closed."""
BACKOFF_MAX_S = 1.0


class TransportError(Exception):
    """A control call failed: the peer is unreachable or answered garbage."""


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise TransportError(f"bad address {addr!r}: want host:port")
    return host.strip("[]"), int(port)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next frame, or None at a clean end of stream."""
    header = _recv_exactly(sock, wire.FRAME_HEADER_BYTES)
    if header is None:
        return None
    if header.startswith(b"HTTP/"):
        raise wire.WireError("it answered HTTP: give its Raft address, not its HTTP address")
    kind, size = wire.read_frame_header(header)
    payload = _recv_exactly(sock, size)
    if payload is None:
        raise wire.WireError("connection closed inside a frame")
    return kind, payload


def call(addr: str, request: dict[str, object], timeout_s: float) -> dict[str, object]:
    """One control call: connect, ask, read the answer, close."""
    try:
        with socket.create_connection(split_addr(addr), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(wire.PREAMBLE + wire.frame(wire.KIND_CALL, wire.encode_json(request)))
            got = read_frame(sock)
    except (OSError, wire.WireError) as e:
        raise TransportError(f"{addr}: {e}") from e
    if got is None or got[0] != wire.KIND_ANSWER:
        raise TransportError(f"{addr}: no answer")
    try:
        return wire.decode_json(got[1])
    except wire.WireError as e:
        raise TransportError(f"{addr}: {e}") from e


class _Peer:
    """The outbound side for one peer: a bounded queue and its sender."""

    def __init__(self, transport: Transport, node: NodeId, addr: str) -> None:
        self.transport = transport
        self.node = node
        self.addr = addr
        self.queue: deque[Message] = deque()
        self.cv = threading.Condition()
        self.dropped = 0
        self.sock: socket.socket | None = None
        self.closed = False
        self.thread = threading.Thread(target=self._run, name=f"send-{node}", daemon=True)
        self.thread.start()

    def put(self, m: Message) -> None:
        with self.cv:
            if len(self.queue) >= QUEUE_MAX:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(m)
            self.cv.notify()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self.cv:
                while not self.queue and not self.closed:
                    self.cv.wait()
                if self.closed:
                    break
                batch = list(self.queue)
                self.queue.clear()
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(
                        split_addr(self.addr), timeout=self.transport.connect_timeout_s
                    )
                    self.sock.settimeout(self.transport.send_timeout_s)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.sock.sendall(wire.PREAMBLE + self.transport.hello)
                data = b"".join(wire.frame(wire.KIND_RAFT, wire.encode_message(m)) for m in batch)
                self.sock.sendall(data)
                backoff = 0.05
            except (OSError, TransportError) as e:
                log.debug("send to %s at %s failed: %s", self.node, self.addr, e)
                self._drop_connection()
                self.transport.on_unreachable(self.node)
                # Back off before the next attempt; what queues meanwhile is
                # kept (bounded), so the first message after a heal is recent.
                with self.cv:
                    self.cv.wait_for(lambda: self.closed, timeout=backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


class Transport:
    def __init__(
        self,
        node_id: NodeId,
        adv_addr: str,
        bind_addr: str,
        on_message: Callable[[Message], None],
        on_call: Callable[[dict[str, object]], dict[str, object]],
        on_unreachable: Callable[[NodeId], None],
        connect_timeout_s: float = 5.0,
        send_timeout_s: float = 5.0,
    ) -> None:
        self.node_id = node_id
        self.bind_addr = bind_addr
        self.hello = wire.frame(
            wire.KIND_HELLO, wire.encode_json({"id": node_id, "addr": adv_addr})
        )
        self._conf_addrs: dict[NodeId, str] = {}
        self._learned: dict[NodeId, str] = {}
        self.on_message = on_message
        self.on_call = on_call
        self.on_unreachable = on_unreachable
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        self._peers: dict[NodeId, _Peer] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = False
        self.bad_frames = 0

    # -- lifecycle --------------------------------------------------------------
    def listen(self) -> None:
        host, port = split_addr(self.bind_addr)
        self._listener = socket.create_server((host, port), reuse_port=False, backlog=128)
        threading.Thread(target=self._accept, name="raft-accept", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self._lock:
            peers = list(self._peers.values())
            self._peers.clear()
        for p in peers:
            p.close()

    # -- outbound ----------------------------------------------------------------
    def set_peers(self, addrs: dict[NodeId, str]) -> None:
        """Track the members of the configuration (this node excluded)."""
        with self._lock:
            self._conf_addrs = dict(addrs)
            self._sync_peers()

    def _sync_peers(self) -> None:
        # The configuration's addresses win; a peer that introduced itself
        # but is not (yet) in our configuration is reachable too.
        addrs = {**self._learned, **self._conf_addrs}
        for node in list(self._peers):
            if node not in addrs or self._peers[node].addr != addrs[node]:
                self._peers.pop(node).close()
        for node, addr in addrs.items():
            if node != self.node_id and addr and node not in self._peers:
                self._peers[node] = _Peer(self, node, addr)

    def send(self, m: Message) -> None:
        peer = self._peers.get(m.to)
        if peer is None:
            self.on_unreachable(m.to)
            return
        peer.put(m)

    # -- inbound -----------------------------------------------------------------
    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(IDLE_TIMEOUT_S)
        try:
            with sock:
                if _recv_exactly(sock, len(wire.PREAMBLE)) != wire.PREAMBLE:
                    raise wire.WireError("not a rqlite-py peer (bad preamble)")
                while not self._stopping:
                    got = read_frame(sock)
                    if got is None:
                        return
                    kind, payload = got
                    if kind == wire.KIND_HELLO:
                        self._introduce(wire.decode_json(payload))
                    elif kind == wire.KIND_RAFT:
                        m = wire.decode_message(payload)
                        if m.to == self.node_id:
                            self.on_message(m)
                    elif kind == wire.KIND_CALL:
                        answer = self._answer(wire.decode_json(payload))
                        sock.sendall(wire.frame(wire.KIND_ANSWER, wire.encode_json(answer)))
                    else:
                        raise wire.WireError(f"unexpected frame kind {kind}")
        except wire.WireError as e:
            self.bad_frames += 1
            log.warning("dropping a connection that sent a bad frame: %s", e)
        except OSError:
            pass

    def _introduce(self, hello: dict[str, object]) -> None:
        node, addr = hello.get("id"), hello.get("addr")
        if not isinstance(node, str) or not isinstance(addr, str):
            raise wire.WireError("bad hello")
        with self._lock:
            if self._learned.get(NodeId(node)) != addr:
                self._learned[NodeId(node)] = addr
                self._sync_peers()

    def _answer(self, request: dict[str, object]) -> dict[str, object]:
        try:
            return self.on_call(request)
        except Exception as e:  # a failed call is answered, never fatal
            log.warning("control call %s failed: %s", request.get("op"), e)
            return {"error": str(e)}
