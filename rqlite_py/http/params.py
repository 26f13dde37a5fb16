"""Query parameters into a frozen dataclass, validated up front (API.md §a.2).

Keys are case-sensitive, the first value wins, and a flag is on when its key
is present, whatever its value (`?pretty=false` still means pretty), as in
rqlite. Beyond rqlite, a key that no endpoint knows is an error: a typo such
as `?levle=strong` must not silently become a weak read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..config import FlagError, parse_duration

KNOWN = frozenset(
    {
        "pretty",
        "timings",
        "associative",
        "blob_array",
        "qualify_columns",
        "transaction",
        "level",
        "freshness",
        "freshness_strict",
        "linearizable_timeout",
        "queue",
        "wait",
        "timeout",
        "retries",
        "redirect",
        "noleader",
        "nonvoters",
        "ver",
        "db_timeout",
        "raft_index",
        "norwrandom",
        "norwtime",
        "noparse",
        "fmt",
        "compress",
        "vacuum",
        "tables",
        "sync",
        "key",
        "trailing_logs",
        "q",
    }
)
_DURATIONS = ("timeout", "freshness", "db_timeout", "linearizable_timeout")
_INTS = ("retries", "trailing_logs")


class ParamError(ValueError):
    """A bad query parameter: 400 with this message."""


@dataclass(frozen=True, slots=True)
class QueryParams:
    pretty: bool = False
    timings: bool = False
    associative: bool = False
    blob_array: bool = False
    qualify_columns: bool = False
    transaction: bool = False
    level: str | None = None
    freshness_s: float = 0.0
    freshness_strict: bool = False
    linearizable_timeout_s: float = 0.0
    queue: bool = False
    wait: bool = False
    timeout_s: float = 0.0
    retries: int = 0
    redirect: bool = False
    noleader: bool = False
    nonvoters: bool = False
    ver: str = ""
    db_timeout_s: float = 0.0
    raft_index: bool = False
    norwrandom: bool = False
    norwtime: bool = False
    noparse: bool = False
    fmt: str = ""
    compress: bool = False
    vacuum: bool = False
    tables: tuple[str, ...] = ()
    sync: bool = False
    key: str = ""
    trailing_logs: int | None = None
    q: str | None = None


def parse(args: Mapping[str, str]) -> QueryParams:
    """`args` maps each key to its first value (Request.args)."""
    unknown = sorted(k for k in args if k not in KNOWN)
    if unknown:
        raise ParamError(f"unknown query parameter {unknown[0]}")
    durations = {}
    for k in _DURATIONS:
        if k in args:
            try:
                durations[k] = parse_duration(args[k])
            except FlagError as e:
                raise ParamError(f"{k} is not a valid duration") from e
    ints: dict[str, int] = {}
    for k in _INTS:
        if k in args:
            try:
                ints[k] = int(args[k])
            except ValueError as e:
                raise ParamError(f"{k} is not a valid integer") from e
            if ints[k] < 0:
                # A count (rqlite's are unsigned): a negative trailing_logs
                # once asked the log to compact past its end, which stopped
                # the Raft loop (found by scripts/fuzz.py).
                raise ParamError(f"{k} must not be negative")
    if "freshness_strict" in args and "freshness" not in args:
        raise ParamError("freshness_strict requires freshness")
    if "q" in args and not args["q"]:
        raise ParamError("query parameter not set")
    tables = tuple(t for t in args.get("tables", "").split(",") if t)
    return QueryParams(
        pretty="pretty" in args,
        timings="timings" in args,
        associative="associative" in args,
        blob_array="blob_array" in args,
        qualify_columns="qualify_columns" in args,
        transaction="transaction" in args,
        level=args.get("level"),
        freshness_s=durations.get("freshness", 0.0),
        freshness_strict="freshness_strict" in args,
        linearizable_timeout_s=durations.get("linearizable_timeout", 0.0),
        queue="queue" in args,
        wait="wait" in args,
        timeout_s=durations.get("timeout", 0.0),
        retries=ints.get("retries", 0),
        redirect="redirect" in args,
        noleader="noleader" in args,
        nonvoters="nonvoters" in args,
        ver=args.get("ver", ""),
        db_timeout_s=durations.get("db_timeout", 0.0),
        raft_index="raft_index" in args,
        norwrandom="norwrandom" in args,
        norwtime="norwtime" in args,
        noparse="noparse" in args,
        fmt=args.get("fmt", ""),
        compress="compress" in args,
        vacuum="vacuum" in args,
        tables=tables,
        sync="sync" in args,
        key=args.get("key", ""),
        trailing_logs=ints.get("trailing_logs"),
        q=args.get("q"),
    )
