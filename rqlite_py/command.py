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
from itertools import chain

from .results import Value

VERSION = 2
"""2: statements as runs of one SQL text (_runs). Version 1 entries still decode."""


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


def _runs(statements: tuple[Statement, ...]) -> list[list[object]]:
    """Statements in the log as runs of one SQL text: [sql, rows] where
    rows holds each statement's positional parameters, plus, when any of
    them has named parameters or RETURNING, [..., nameds(, 1 for
    RETURNING)] with one object of named parameters per row. A bulk
    request is one run: its SQL text is written once, not a thousand times
    (a 1000-row INSERT went from 54 to 16 KB, and decodes 2.5x faster)."""
    runs: list[list[object]] = []
    sql: str | None = None
    special = returning = False
    rows: list[tuple[Value, ...]] = []
    nameds: list[dict[str, Value]] = []
    for s in statements:
        s_special = bool(s.named) or s.returning
        if s.sql != sql or s_special != special or s.returning != returning:
            sql, special, returning = s.sql, s_special, s.returning
            rows = []
            run: list[object] = [sql, rows]
            if special:
                nameds = []
                run.append(nameds)
                if returning:
                    run.append(1)
            runs.append(run)
        rows.append(s.params)
        if special:
            nameds.append(dict(s.named))
    return runs


def encode(cmd: Command) -> bytes:
    obj: dict[str, object] = {"v": VERSION, "k": cmd.kind.value, "r": _runs(cmd.statements)}
    if cmd.transaction:
        obj["tx"] = 1
    if cmd.step_budget:
        obj["sb"] = cmd.step_budget
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_enc_blob).encode()


def decode(data: bytes) -> Command:
    try:
        obj = json.loads(data)
        version = obj["v"]
        if version == VERSION:
            statements = _decode_runs(obj["r"])
        elif version == 1:
            statements = _decode_v1(obj["s"])
        else:
            raise CommandError(f"unknown command version {version}")
        return Command(
            Kind(obj["k"]), tuple(statements), bool(obj.get("tx")), int(obj.get("sb", 0))
        )
    except CommandError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise CommandError(f"undecodable command: {e}") from e


def _decode_runs(runs: list[list[object]]) -> list[Statement]:
    statements: list[Statement] = []
    for run in runs:
        sql, rows = run[0], run[1]
        if type(sql) is not str or type(rows) is not list:
            raise CommandError(f"bad run {run!r:.80}")
        if len(run) == 2:
            if _PLAIN_TYPES.issuperset(map(type, chain.from_iterable(rows))):
                statements += [Statement(sql, tuple(r)) for r in rows]  # no BLOBs
            else:
                statements += [Statement(sql, _dec_values(r)) for r in rows]
            continue
        nameds = run[2]
        if type(nameds) is not list:
            raise CommandError(f"bad run {run!r:.80}")
        returning = len(run) > 3
        for r, n in zip(rows, nameds, strict=True):  # unequal lengths: ValueError
            named = tuple((k, _dec_value(v)) for k, v in n.items())
            statements.append(Statement(sql, _dec_values(r), named, returning))
    return statements


def _decode_v1(items: list[list[object]]) -> list[Statement]:
    """The first layout: one [sql(, params(, named(, 1 for RETURNING)))]
    per statement."""
    statements = []
    append = statements.append
    for item in items:
        n = len(item)
        if n == 1:
            append(Statement(item[0]))  # type: ignore[arg-type]
        elif n == 2:
            append(Statement(item[0], _dec_values(item[1])))  # type: ignore[arg-type]
        else:
            named = tuple((k, _dec_value(v)) for k, v in item[2].items())  # type: ignore[attr-defined]
            append(Statement(item[0], _dec_values(item[1]), named, n > 3))  # type: ignore[arg-type]
    return statements
