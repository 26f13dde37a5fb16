"""The payload of a Raft log entry: what a request asks the database to do.

One HTTP request becomes one command and one log entry, so its statements are
applied together and never interleaved with another request's. The encoding
is versioned JSON: readable in a hex dump, stable across Python versions, and
fast enough (BLOB values travel as base64).
"""

from __future__ import annotations

import base64
import enum
import json
import struct
from dataclasses import dataclass

from .results import Value

VERSION = 1


class CommandError(ValueError):
    """A log entry that cannot be decoded: the node must stop, never guess."""


class Kind(enum.Enum):
    LOAD_SQL = "load_sql"
    """An SQL dump: one statement string; an error rolls back what it began."""
    EXECUTE = "execute"
    """Writes; RETURNING statements answer in query shape."""
    QUERY = "query"
    """A strong read, answered from the state machine after commit."""
    REQUEST = "request"
    """The unified endpoint: each statement answers as a read or a write."""


@dataclass(slots=True)
class Statement:
    """One SQL statement and its parameters. Treated as immutable; not
    frozen only because a frozen dataclass costs three times as much to
    build, and a bulk request builds thousands (issue 7, measured)."""

    sql: str
    params: tuple[Value, ...] = ()
    named: tuple[tuple[str, Value], ...] = ()
    returning: bool = False
    """Force the query shape (a RETURNING clause was found when parsing)."""


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    statements: tuple[Statement, ...]
    transaction: bool = False
    step_budget: int = 0
    """SQLite VM steps each statement may take (0: unlimited). A step count,
    not a wall-clock timeout, so that every node stops at the same point."""


_PLAIN = (str, int, float, bool, type(None))


def _dec_value(v: object) -> Value:
    if isinstance(v, dict):
        return base64.b64decode(v["b"])
    if isinstance(v, _PLAIN):
        return v  # type: ignore[return-value]
    raise CommandError(f"bad value {v!r}")


_PLAIN_TYPES = frozenset(_PLAIN)


def _dec_values(vs: list[object]) -> tuple[Value, ...]:
    if _PLAIN_TYPES.issuperset(map(type, vs)):
        return tuple(vs)  # type: ignore[arg-type]  # the common case: no BLOBs
    return tuple(_dec_value(x) for x in vs)


def _enc_blob(v: object) -> object:
    """json.dumps calls this for what JSON has no type for: BLOBs."""
    if isinstance(v, bytes):
        return {"b": base64.b64encode(v).decode()}
    raise TypeError(f"cannot encode {type(v).__name__}")


LOAD_PREFIX = b"\x00LOAD"
"""A piece of a SQLite database file travels raw after this prefix and a
small binary header, not as JSON."""
_LOAD_HEADER = struct.Struct(">16sII")
LOAD_CHUNK_BYTES = 16 << 20
"""A loaded file is split into entries of at most this much, so that no
entry holds up the Raft loop (or exceeds a frame) however large the file."""


@dataclass(frozen=True, slots=True)
class LoadChunk:
    load_id: bytes
    seq: int
    count: int
    data: bytes


def encode_load_chunks(database: bytes, load_id: bytes) -> list[bytes]:
    pieces = [
        database[i : i + LOAD_CHUNK_BYTES] for i in range(0, len(database), LOAD_CHUNK_BYTES)
    ] or [b""]
    return [
        LOAD_PREFIX + _LOAD_HEADER.pack(load_id, seq, len(pieces)) + piece
        for seq, piece in enumerate(pieces)
    ]


def decode_load_chunk(data: bytes) -> LoadChunk | None:
    """The chunk in an entry, or None when the entry is not a load chunk."""
    if not data.startswith(LOAD_PREFIX):
        return None
    start = len(LOAD_PREFIX)
    try:
        load_id, seq, count = _LOAD_HEADER.unpack_from(data, start)
    except struct.error as e:
        raise CommandError(f"bad load chunk: {e}") from e
    if seq >= count:
        raise CommandError(f"bad load chunk {seq} of {count}")
    return LoadChunk(load_id, seq, count, data[start + _LOAD_HEADER.size :])


def _item(s: Statement) -> object:
    """A statement in the log: [sql], [sql, params], or, with named
    parameters or RETURNING, [sql, params, named(, 1 for RETURNING)]."""
    if not (s.named or s.returning):
        return (s.sql, s.params) if s.params else (s.sql,)
    item: list[object] = [s.sql, s.params, dict(s.named)]
    if s.returning:
        item.append(1)
    return item


def encode(cmd: Command) -> bytes:
    obj: dict[str, object] = {
        "v": VERSION,
        "k": cmd.kind.value,
        "s": [_item(s) for s in cmd.statements],
    }
    if cmd.transaction:
        obj["tx"] = 1
    if cmd.step_budget:
        obj["sb"] = cmd.step_budget
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_enc_blob).encode()


def decode(data: bytes) -> Command:
    try:
        obj = json.loads(data)
        if obj["v"] != VERSION:
            raise CommandError(f"unknown command version {obj['v']}")
        statements = []
        append = statements.append
        for item in obj["s"]:
            n = len(item)
            if n == 1:
                append(Statement(item[0]))
            elif n == 2:
                append(Statement(item[0], _dec_values(item[1])))
            else:
                named = tuple((k, _dec_value(v)) for k, v in item[2].items())
                append(Statement(item[0], _dec_values(item[1]), named, n > 3))
        return Command(
            Kind(obj["k"]), tuple(statements), bool(obj.get("tx")), int(obj.get("sb", 0))
        )
    except CommandError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise CommandError(f"undecodable command: {e}") from e
