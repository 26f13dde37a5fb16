"""Node-to-node messages over TCP on the Raft port (frames: wire.py).

Raft messages travel one way over one persistent connection per peer, fed
by a bounded queue and a sender thread: a slow or dead peer only ever loses
its own (stale) messages, never blocks the Raft loop or the other peers, and
never grows memory without bound. Raft tolerates the loss; the core retries.
When the sender is idle and the socket has room, the Raft loop writes a
small message itself: a hand-off to the sender thread costs 100-300 us of
wake-up and GIL hand-over, twice on every write's path (issue 7, traced).

Inbound messages go to `on_message(m, more)`, `more` telling whether the
connection already holds further bytes (the next message, most likely).

Control calls (join, remove, node metadata) are short request/answer
exchanges on their own connection, so they never queue behind Raft traffic.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import tempfile
import threading
import zlib
from collections import deque
from collections.abc import Callable

from . import disk, snapshots, wire
from .raft.types import Message, NodeId
from .tls import NodeTls

log = logging.getLogger(__name__)

QUEUE_MAX = 4096
"""Messages waiting for one peer; beyond this the oldest are dropped."""
QUEUE_MAX_BYTES = 64 << 20
"""Entry bytes waiting for one peer; beyond this too. A leader whose peer
is slow or unreachable sends it up to 1 MB per append and per heartbeat
answer: counted in messages alone, a queue could hold gigabytes (a stale
leader was once seen at 8.7 GB resident, most likely this). Raft resends
what is dropped."""
SEND_BATCH_BYTES = 8 << 20
"""Entry bytes the sender thread encodes and writes in one go."""
IDLE_TIMEOUT_S = 300.0
"""An inbound connection silent this long is closed."""
BACKOFF_MAX_S = 1.0
DIRECT_MAX_BYTES = 1 << 14
"""Larger messages always go through the sender thread: the Raft loop on
a leader is the bottleneck of bulk writes, and a 60 KB send cost it 11% of
its time (issue 7), time a sender thread spends in the kernel instead."""
SNAPSHOT_CHUNK = 1 << 20


def _entry_bytes(m: Message) -> int:
    return sum(len(e.data) for e in m.entries)


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


def connect(addr: str, timeout_s: float, tls: NodeTls | None) -> socket.socket:
    """A connection to a peer's Raft port, through TLS's handshake with -node-cert.
    Raises OSError (ssl.SSLError included) or TransportError."""
    host, port = split_addr(addr)
    sock = socket.create_connection((host, port), timeout=timeout_s)
    if tls is None:
        return sock
    try:
        return tls.wrap_client(sock, host)
    except BaseException:
        sock.close()
        raise


def call(
    addr: str, request: dict[str, object], timeout_s: float, tls: NodeTls | None = None
) -> dict[str, object]:
    """One control call: connect, ask, read the answer, close."""
    try:
        with connect(addr, timeout_s, tls) as sock:
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


def _ready_now(sock: socket.socket, event: int) -> bool:
    """Is `sock` readable (POLLIN) or writable (POLLOUT) without waiting?"""
    if event == select.POLLIN and isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # decrypted bytes wait inside the TLS layer, unseen by poll
    poller = select.poll()
    poller.register(sock, event)
    return bool(poller.poll(0))


class _Peer:
    """The outbound side for one peer: a bounded queue and its sender."""

    def __init__(self, transport: Transport, node: NodeId, addr: str) -> None:
        self.transport = transport
        self.node = node
        self.addr = addr
        self.queue: deque[Message] = deque()
        self.queued_bytes = 0
        """Entry bytes in `queue` (see QUEUE_MAX_BYTES)."""
        self.cv = threading.Condition()
        self.dropped = 0
        self.sock: socket.socket | None = None
        self.closed = False
        self.busy = False
        """Someone is writing to `sock` (the sender thread or a direct put)."""
        self.tail = b""
        """The unsent end of a direct write: the sender thread sends it first."""
        self.thread = threading.Thread(target=self._run, name=f"send-{node}", daemon=True)
        self.thread.start()

    def put(self, m: Message) -> None:
        with self.cv:
            sock = self.sock
            direct = not self.queue and not self.busy and not self.tail and sock is not None
            if not direct:
                size = _entry_bytes(m)
                while self.queue and (
                    len(self.queue) >= QUEUE_MAX or self.queued_bytes + size > QUEUE_MAX_BYTES
                ):
                    self.queued_bytes -= _entry_bytes(self.queue.popleft())
                    self.dropped += 1
                self.queue.append(m)
                self.queued_bytes += size
                self.cv.notify()
                return
            self.busy = True
        assert sock is not None
        data = wire.frame(wire.KIND_RAFT, wire.encode_message(m))
        sent = 0
        try:
            if len(data) <= DIRECT_MAX_BYTES and _ready_now(sock, select.POLLOUT):
                sent = sock.send(data)  # never blocks: there is room
        except OSError:
            sent = 0  # nothing went: the sender thread meets the error and reconnects
        with self.cv:
            self.busy = False
            if sent < len(data):
                self.tail = data[sent:]
            if self.tail or self.queue:
                self.cv.notify()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify()

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self.cv:
                while (self.busy or not (self.queue or self.tail)) and not self.closed:
                    self.cv.wait()
                if self.closed:
                    break
                batch = self._take_batch()
                tail, self.tail = self.tail, b""
                self.busy = True
            try:
                if self.sock is None:
                    tail = b""  # the end of a frame begun on a connection now gone
                    self.sock = connect(
                        self.addr, self.transport.connect_timeout_s, self.transport.tls
                    )
                    self.sock.settimeout(self.transport.send_timeout_s)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.sock.sendall(wire.PREAMBLE + self.transport.hello)
                data = b"".join(wire.frame(wire.KIND_RAFT, wire.encode_message(m)) for m in batch)
                self.sock.sendall(tail + data)
                backoff = 0.05
                with self.cv:
                    self.busy = False
            except (OSError, TransportError) as e:
                log.debug("send to %s at %s failed: %s", self.node, self.addr, e)
                with self.cv:
                    self._drop_connection()
                    self.busy = False
                self.transport.on_unreachable(self.node)
                # Back off before the next attempt; what queues meanwhile is
                # kept (bounded), so the first message after a heal is recent.
                with self.cv:
                    self.cv.wait_for(lambda: self.closed, timeout=backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
        self._drop_connection()

    def _take_batch(self) -> list[Message]:
        """The oldest queued messages, up to SEND_BATCH_BYTES of entries (at
        least one message). Called with `cv` held."""
        batch: list[Message] = []
        size = 0
        while self.queue and (not batch or size + _entry_bytes(self.queue[0]) <= SEND_BATCH_BYTES):
            m = self.queue.popleft()
            size += _entry_bytes(m)
            batch.append(m)
        self.queued_bytes -= size
        return batch

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
        on_message: Callable[[Message, bool], None],
        on_call: Callable[[dict[str, object]], dict[str, object]],
        on_unreachable: Callable[[NodeId], None],
        on_snapshot: Callable[[Message, str], None] | None = None,
        staging_dir: str = "",
        compress_snapshots: bool = False,
        connect_timeout_s: float = 5.0,
        send_timeout_s: float = 5.0,
        tls: NodeTls | None = None,
    ) -> None:
        self.node_id = node_id
        self.tls = tls
        """-node-cert: every connection, both ways, is TLS."""
        self.bind_addr = bind_addr
        self.hello = wire.frame(
            wire.KIND_HELLO, wire.encode_json({"id": node_id, "addr": adv_addr})
        )
        self._conf_addrs: dict[NodeId, str] = {}
        self._learned: dict[NodeId, str] = {}
        self.on_message = on_message
        self.on_call = on_call
        self.on_unreachable = on_unreachable
        self.on_snapshot = on_snapshot
        self.staging_dir = staging_dir
        self.compress_snapshots = compress_snapshots
        self.connect_timeout_s = connect_timeout_s
        self.send_timeout_s = send_timeout_s
        # Two connections per peer: appends that carry entries go on the
        # bulk lane; heartbeats, votes and answers on the fast lane, so that
        # a large append never holds up the heartbeats that keep a leader
        # in place (Raft tolerates the reordering between the two).
        self._peers: dict[NodeId, tuple[_Peer, _Peer]] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stopping = False
        self.bad_frames = 0
        self.bad_handshakes = 0

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
            lanes = [p for pair in self._peers.values() for p in pair]
            self._peers.clear()
        for p in lanes:
            p.close()

    def dropped_messages(self) -> int:
        """Messages dropped because a peer's queue was full (it is slow or dead)."""
        with self._lock:
            return sum(lane.dropped for pair in self._peers.values() for lane in pair)

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
            if node not in addrs or self._peers[node][0].addr != addrs[node]:
                for lane in self._peers.pop(node):
                    lane.close()
        for node, addr in addrs.items():
            if node != self.node_id and addr and node not in self._peers:
                self._peers[node] = (_Peer(self, node, addr), _Peer(self, node, addr))

    def send(self, m: Message) -> None:
        lanes = self._peers.get(m.to)
        if lanes is None:
            self.on_unreachable(m.to)
            return
        fast, bulk = lanes
        (bulk if m.entries else fast).put(m)

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
        if self.tls is not None:
            # A peer gets connect_timeout_s to finish its handshake: one that
            # stalls in it holds only this connection's thread, that long.
            sock.settimeout(self.connect_timeout_s)
            try:
                sock = self.tls.wrap_server(sock)
            except OSError as e:  # ssl.SSLError included: no valid certificate
                self.bad_handshakes += 1
                log.warning("refusing a connection on the Raft port: TLS handshake failed: %s", e)
                sock.close()
                return
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
                    elif kind == wire.KIND_SNAPSHOT:
                        answer = self._receive_snapshot(sock, wire.decode_json(payload))
                        sock.sendall(wire.frame(wire.KIND_ANSWER, wire.encode_json(answer)))
                    elif kind == wire.KIND_RAFT:
                        m = wire.decode_message(payload)
                        if m.to == self.node_id:
                            self.on_message(m, _ready_now(sock, select.POLLIN))
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

    # -- snapshots ----------------------------------------------------------------
    def send_snapshot(self, m: Message, path: str, done: Callable[[bool], None]) -> None:
        """Stream the snapshot file at `path` with its SNAPSHOT message to
        m.to, on a connection of its own; `done(ok)` reports the outcome."""
        addr = {**self._learned, **self._conf_addrs}.get(m.to, "")

        def stream() -> None:
            ok = False
            try:
                size = os.path.getsize(path)
                header = {
                    "size": size,
                    "sha256": snapshots.file_sha256(path),
                    "zlib": self.compress_snapshots,
                }
                z = zlib.compressobj(1) if self.compress_snapshots else None
                with connect(addr, self.connect_timeout_s, self.tls) as sock:
                    sock.settimeout(max(self.send_timeout_s, 30.0))
                    sock.sendall(
                        wire.PREAMBLE
                        + self.hello
                        + wire.frame(wire.KIND_SNAPSHOT, wire.encode_json(header))
                        + wire.frame(wire.KIND_RAFT, wire.encode_message(m))
                    )
                    with open(path, "rb") as f:
                        while chunk := f.read(SNAPSHOT_CHUNK):
                            data = z.compress(chunk) if z else chunk
                            if data:
                                sock.sendall(wire.frame(wire.KIND_CHUNK, data))
                    if z:
                        sock.sendall(wire.frame(wire.KIND_CHUNK, z.flush()))
                    got = read_frame(sock)
                    ok = got is not None and bool(wire.decode_json(got[1]).get("ok"))
            except (OSError, TransportError, wire.WireError) as e:
                log.warning("sending snapshot %d to %s failed: %s", m.snapshot.index, m.to, e)  # type: ignore[union-attr]
            done(ok)

        threading.Thread(target=stream, name=f"snapshot-{m.to}", daemon=True).start()

    def _receive_snapshot(
        self, sock: socket.socket, header: dict[str, object]
    ) -> dict[str, object]:
        size, digest = header.get("size"), header.get("sha256")
        if not isinstance(size, int) or size < 0 or not isinstance(digest, str):
            raise wire.WireError("bad snapshot header")
        got = read_frame(sock)
        if got is None or got[0] != wire.KIND_RAFT:
            raise wire.WireError("snapshot without its message")
        m = wire.decode_message(got[1])
        if m.snapshot is None or m.to != self.node_id or self.on_snapshot is None:
            raise wire.WireError("not a snapshot for this node")
        try:
            fd, tmp = tempfile.mkstemp(dir=self.staging_dir or None, suffix=".snapshot.tmp")
        except OSError as e:
            log.warning("refusing snapshot %d: %s", m.snapshot.index, e)
            raise
        try:
            received = self._receive_snapshot_file(sock, fd, size, bool(header.get("zlib")))
            if received != size or snapshots.file_sha256(tmp) != digest:
                os.remove(tmp)
                return {"error": "snapshot corrupted in transit"}
        except BaseException as e:
            # A full disk, a broken stream: nothing of it stays in incoming/,
            # and the leader sees the transfer fail and tries again later.
            if isinstance(e, OSError):
                log.warning("refusing snapshot %d: %s", m.snapshot.index, e)
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            raise
        self.on_snapshot(m, tmp)
        return {"ok": True}

    def _receive_snapshot_file(self, sock: socket.socket, fd: int, size: int, zlib_: bool) -> int:
        received = synced = 0
        z = zlib.decompressobj() if zlib_ else None
        with os.fdopen(fd, "wb") as f:
            while received < size:
                chunk = read_frame(sock)
                if chunk is None or chunk[0] != wire.KIND_CHUNK:
                    raise wire.WireError("snapshot stream ended early")
                try:
                    # Bounded: never more than one chunk's worth beyond `size`.
                    data = z.decompress(chunk[1], size - received + 1) if z else chunk[1]
                except zlib.error as e:
                    raise wire.WireError(f"bad compressed snapshot: {e}") from e
                f.write(data)
                received += len(data)
                if received - synced >= disk.PACE_BYTES:  # as disk.copy_paced, and why
                    f.flush()
                    os.fdatasync(f.fileno())
                    synced = received
            f.flush()
            os.fsync(f.fileno())
        return received

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
