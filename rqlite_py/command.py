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
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from typing import overload

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


@dataclass(slots=True)
class Run:
    """Consecutive statements with one SQL text: each row is one
    statement's positional parameters; `named`, unless None, holds each
    row's named ones."""

    sql: str
    rows: list[Sequence[Value]]
    named: list[tuple[tuple[str, Value], ...]] | None = None
    returning: bool = False

    def statement(self, j: int) -> Statement:
        named = self.named[j] if self.named is not None else ()
        return Statement(self.sql, tuple(self.rows[j]), named, self.returning)

    def batchable(self) -> bool:
        """Can its rows go through one executemany (db._run_batch)? Named
        parameters may need the statement's parameter names."""
        return self.named is None and not self.returning


def add_statement(
    runs: list[Run],
    sql: str,
    params: Sequence[Value],
    named: tuple[tuple[str, Value], ...] = (),
    returning: bool = False,
) -> None:
    """Append a statement to `runs`, in the last run if it has the same
    SQL text and RETURNING flag."""
    last = runs[-1] if runs else None
    if last is None or last.sql != sql or last.returning != returning:
        runs.append(Run(sql, [params], [named] if named else None, returning))
        return
    if named and last.named is None:
        last.named = [()] * len(last.rows)
    if last.named is not None:
        last.named.append(named)
    last.rows.append(params)


class Statements(Sequence[Statement]):
    """A request's statements kept as runs of one SQL text (Run), as a bulk
    request sends them and the log holds them. A Statement is made only
    for what is indexed: encoding and db.run's batches use the runs, so a
    1000-row INSERT makes none of its 1000 Statements on the leader or on
    the followers (issue 7). Equal to any sequence of the same statements."""

    __slots__ = ("runs", "_ends")

    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self._ends = list(accumulate(len(r.rows) for r in runs))

    @classmethod
    def of(cls, statements: Iterable[Statement]) -> Statements:
        if isinstance(statements, Statements):
            return statements
        runs: list[Run] = []
        for s in statements:
            add_statement(runs, s.sql, s.params, s.named, s.returning)
        return cls(runs)

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def _locate(self, i: int) -> tuple[int, int]:
        """(run, row) of statement i, 0 <= i < len(self)."""
        k = bisect_right(self._ends, i)
        return k, i - (self._ends[k - 1] if k else 0)

    @overload
    def __getitem__(self, i: int) -> Statement: ...
    @overload
    def __getitem__(self, i: slice) -> list[Statement]: ...
    def __getitem__(self, i: int | slice) -> Statement | list[Statement]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        k, j = self._locate(i)
        return self.runs[k].statement(j)

    def __iter__(self) -> Iterator[Statement]:
        for r in self.runs:
            for j in range(len(r.rows)):
                yield r.statement(j)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str | bytes):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Statements({list(self)!r})"

    def run_end(self, i: int) -> int:
        """Where the run of one plain write holding statement i ends (i + 1:
        no run)."""
        k, _ = self._locate(i)
        return self._ends[k] if self.runs[k].batchable() else i + 1

    def rows(self, start: int, end: int) -> list[Sequence[Value]]:
        """The parameters of statements [start, end), all in one run."""
        k, j = self._locate(start)
        return self.runs[k].rows[j : j + end - start]


@dataclass(frozen=True, slots=True)
class Command:
    kind: Kind
    statements: Sequence[Statement]
    """Statements, on the hot paths (a tuple in tests and old entries)."""
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


def _runs(statements: Sequence[Statement]) -> list[list[object]]:
    """Statements in the log as runs of one SQL text: [sql, rows] where
    rows holds each statement's positional parameters, plus, when any of
    them has named parameters or RETURNING, [..., nameds(, 1 for
    RETURNING)] with one object of named parameters per row. A bulk
    request is one run: its SQL text is written once, not a thousand times
    (a 1000-row INSERT went from 54 to 16 KB, and decodes 2.5x faster)."""
    out: list[list[object]] = []
    for r in Statements.of(statements).runs:
        if r.batchable():
            out.append([r.sql, r.rows])
            continue
        named = r.named if r.named is not None else [()] * len(r.rows)
        run: list[object] = [r.sql, r.rows, [dict(n) for n in named]]
        if r.returning:
            run.append(1)
        out.append(run)
    return out


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
        statements: Sequence[Statement]
        if version == VERSION:
            statements = _decode_runs(obj["r"])
        elif version == 1:
            statements = tuple(_decode_v1(obj["s"]))
        else:
            raise CommandError(f"unknown command version {version}")
        return Command(Kind(obj["k"]), statements, bool(obj.get("tx")), int(obj.get("sb", 0)))
    except CommandError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        raise CommandError(f"undecodable command: {e}") from e


def _decode_runs(runs: list[list[object]]) -> Statements:
    out: list[Run] = []
    for run in runs:
        sql, rows = run[0], run[1]
        if type(sql) is not str or type(rows) is not list:
            raise CommandError(f"bad run {run!r:.80}")
        if len(run) == 2:
            if not _PLAIN_TYPES.issuperset(map(type, chain.from_iterable(rows))):
                rows = [_dec_values(r) for r in rows]  # BLOBs
            out.append(Run(sql, rows))
            continue
        nameds = run[2]
        if type(nameds) is not list:
            raise CommandError(f"bad run {run!r:.80}")
        named = [tuple((k, _dec_value(v)) for k, v in n.items()) for n in nameds]
        if len(named) != len(rows):
            raise CommandError(f"bad run {run!r:.80}")
        out.append(Run(sql, [_dec_values(r) for r in rows], named, len(run) > 3))
    return Statements(out)


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
