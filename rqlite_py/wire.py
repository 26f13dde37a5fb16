"""The node-to-node wire format: length-prefixed frames on the Raft port.

    frame   = length:u32 kind:u8 payload          (length counts kind + payload)
    kind 1  = a Raft message (binary, below)      one way, no answer
    kind 2  = a control call (JSON object)        answered by one kind 3 frame
    kind 3  = a control answer (JSON object)
    kind 4  = hello (JSON: the sender's id and Raft address), first on a Raft
              connection, so that a node new to the cluster can answer the
              leader before the log has told it where the leader is
    kind 5  = a snapshot follows (JSON: size, sha256), then one kind 1 frame
              (the SNAPSHOT message), then kind 6 frames of file data until
              `size` bytes; answered by one kind 3 frame

Raft messages are binary because they carry every log entry a follower
receives. Decoding checks every length against the bytes present, so a
truncated or hostile frame is an error, never an over-read or a huge
allocation.
"""

from __future__ import annotations

import json
import struct

from .raft.types import (
    ConfState,
    Entry,
    EntryType,
    Index,
    Message,
    MsgType,
    NodeId,
    SnapshotMeta,
    Term,
)

PREAMBLE = b"RQPY/1\r\n"
"""Every connection to the Raft port starts with this. Wrong ports show up
at once: an HTTP server answers the line with an HTTP error, and the Raft
port drops a connection that does not start with it."""

KIND_RAFT = 1
KIND_CALL = 2
KIND_ANSWER = 3
KIND_HELLO = 4
KIND_SNAPSHOT = 5
KIND_CHUNK = 6
MAX_FRAME_BYTES = 256 << 20
"""Larger frames are refused: appends are split well below this."""

_FRAME = struct.Struct(">IB")
_HEADER = struct.Struct(">BQQQQBQQBHHIB")
_ENTRY = struct.Struct(">QQBI")
_SNAP = struct.Struct(">QQI")
_TYPES = list(MsgType)
_TYPE_CODES = {t: i for i, t in enumerate(_TYPES)}
_ENTRY_TYPES = list(EntryType)


class WireError(ValueError):
    """Bytes that are not a valid frame: the connection is dropped."""


def frame(kind: int, payload: bytes) -> bytes:
    return _FRAME.pack(len(payload) + 1, kind) + payload


def read_frame_header(header: bytes) -> tuple[int, int]:
    """(kind, payload length) from the 5 header bytes."""
    length, kind = _FRAME.unpack(header)
    if length < 1 or length > MAX_FRAME_BYTES:
        raise WireError(f"frame of {length} bytes")
    if not KIND_RAFT <= kind <= KIND_CHUNK:
        raise WireError(f"unknown frame kind {kind}")
    return kind, length - 1


FRAME_HEADER_BYTES = _FRAME.size


def encode_message(m: Message) -> bytes:
    src, dst = m.from_.encode(), m.to.encode()
    parts = [
        _HEADER.pack(
            _TYPE_CODES[m.type],
            m.term,
            m.log_term,
            m.index,
            m.commit,
            m.reject,
            m.reject_hint,
            m.context,
            m.force,
            len(src),
            len(dst),
            len(m.entries),
            m.snapshot is not None,
        ),
        src,
        dst,
    ]
    for e in m.entries:
        parts.append(_ENTRY.pack(e.term, e.index, e.type.value, len(e.data)))
        parts.append(e.data)
    if m.snapshot is not None:
        conf = m.snapshot.conf.encode()
        parts.append(_SNAP.pack(m.snapshot.index, m.snapshot.term, len(conf)))
        parts.append(conf)
    return b"".join(parts)


def decode_message(buf: bytes) -> Message:
    try:
        return _decode(memoryview(buf))
    except (struct.error, IndexError, KeyError, TypeError, ValueError, RecursionError) as e:
        if isinstance(e, WireError):
            raise
        # RecursionError: a configuration in a snapshot message nested too deep.
        raise WireError(f"bad Raft message: {e}") from e


def _take(buf: memoryview, pos: int, n: int) -> tuple[bytes, int]:
    if n < 0 or pos + n > len(buf):
        raise WireError("truncated Raft message")
    return bytes(buf[pos : pos + n]), pos + n


def _decode(buf: memoryview) -> Message:
    if len(buf) < _HEADER.size:
        raise WireError("truncated Raft message")
    (
        code,
        term,
        log_term,
        index,
        commit,
        reject,
        hint,
        context,
        force,
        src_len,
        dst_len,
        n_entries,
        has_snap,
    ) = _HEADER.unpack_from(buf)
    if code >= len(_TYPES):
        raise WireError(f"unknown message type {code}")
    pos = _HEADER.size
    src, pos = _take(buf, pos, src_len)
    dst, pos = _take(buf, pos, dst_len)
    if n_entries * _ENTRY.size > len(buf) - pos:
        raise WireError("entry count exceeds the frame")
    entries = []
    for _ in range(n_entries):
        if pos + _ENTRY.size > len(buf):
            raise WireError("truncated entry")
        e_term, e_index, e_type, size = _ENTRY.unpack_from(buf, pos)
        data, pos = _take(buf, pos + _ENTRY.size, size)
        entries.append(Entry(Term(e_term), Index(e_index), data, _ENTRY_TYPES[e_type]))
    snapshot = None
    if has_snap:
        if pos + _SNAP.size > len(buf):
            raise WireError("truncated snapshot metadata")
        s_index, s_term, conf_len = _SNAP.unpack_from(buf, pos)
        conf, pos = _take(buf, pos + _SNAP.size, conf_len)
        snapshot = SnapshotMeta(Index(s_index), Term(s_term), ConfState.decode(conf))
    if pos != len(buf):
        raise WireError("trailing bytes after Raft message")
    return Message(
        type=_TYPES[code],
        from_=NodeId(src.decode()),
        to=NodeId(dst.decode()),
        term=Term(term),
        log_term=Term(log_term),
        index=Index(index),
        entries=tuple(entries),
        commit=Index(commit),
        reject=bool(reject),
        reject_hint=Index(hint),
        snapshot=snapshot,
        context=context,
        force=bool(force),
    )


def encode_json(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_json(buf: bytes) -> dict[str, object]:
    try:
        obj = json.loads(buf)
    except (ValueError, RecursionError) as e:
        raise WireError(f"bad control frame: {e}") from e
    if not isinstance(obj, dict):
        raise WireError("control frame is not an object")
    return obj
