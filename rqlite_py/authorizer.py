"""SQLite's authorizer on every connection that runs clients' SQL: what
reaches outside the database is refused (issue 8).

SQLite asks the authorizer about each action of a statement while it
prepares it, whatever the spelling (comments, schema prefixes, case,
statements inside triggers), so this does not depend on matching the text:

- ATTACH of a file, and VACUUM INTO a file (SQLite reports both as an
  ATTACH): they read or write files of the node's machine, different on
  each node, outside what the log replicates;
- load_extension(): code from the node's disk;
- PRAGMAs that change how the node keeps the file (journal_mode,
  synchronous, wal_autocheckpoint, wal_checkpoint, locking_mode,
  query_only, max_page_count), that name directories, or that make the
  schema writable (writes to sqlite_master).

`-sql-allow-external` lets ATTACH, VACUUM INTO and load_extension() through,
for operators who need them; it must then be set alike on every node, since
every node applies the same statements. The PRAGMAs stay refused: the node
itself depends on them.

The node's own statements that need any of these (checkpoints, backups)
run under `trusted()`. A refusal is an SQL error of the statement, like any
other, whose text `explain` makes "not authorized: <reason>".
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import apsw

_local = threading.local()

PRAGMAS_SET = frozenset(
    {
        "journal_mode",
        "synchronous",
        "wal_autocheckpoint",
        "locking_mode",
        "query_only",
        "max_page_count",
        "writable_schema",
        "temp_store_directory",
        "data_store_directory",
    }
)
"""Refused with a value (PRAGMA x = v or x(v)); reading them is fine."""
PRAGMAS_RUN = frozenset({"wal_checkpoint"})
"""Refused even without a value: running them acts."""

FLAG = "-sql-allow-external"

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]


def make(allow_external: bool) -> Authorizer:
    """The authorizer for a node's connections."""

    def authorize(
        op: int, p1: str | None, p2: str | None, _db: str | None, _trigger: str | None
    ) -> int:
        if op == apsw.SQLITE_PRAGMA:
            name = (p1 or "").lower()
            if name in PRAGMAS_RUN or (name in PRAGMAS_SET and p2 is not None):
                return _deny(f"PRAGMA {name} is managed by the node")
        elif op == apsw.SQLITE_ATTACH:
            # VACUUM attaches "" (a temporary database of its own): allowed.
            if p1 and not allow_external:
                return _deny(
                    "ATTACH and VACUUM INTO reach files outside the database "
                    f"(a node started with {FLAG} allows them)"
                )
        elif op == apsw.SQLITE_FUNCTION and p2 == "load_extension" and not allow_external:
            return _deny(f"load_extension() is disabled (a node started with {FLAG} allows it)")
        return apsw.SQLITE_OK

    return authorize


def _deny(reason: str) -> int:
    if getattr(_local, "trusted", False):
        return apsw.SQLITE_OK
    _local.reason = reason
    return apsw.SQLITE_DENY


@contextlib.contextmanager
def trusted() -> Iterator[None]:
    """The node's own statements, on this thread: nothing is refused."""
    before = getattr(_local, "trusted", False)
    _local.trusted = True
    try:
        yield
    finally:
        _local.trusted = before


def explain(message: str) -> str:
    """An SQLite error message, as "not authorized: <reason>" if it reports
    a refusal of the authorizer on this thread (SQLite words those in
    several ways: "not authorized", "authorization denied", "not
    authorized to use function: ...")."""
    reason = getattr(_local, "reason", None)
    if reason and "authoriz" in message:
        _local.reason = None
        return f"not authorized: {reason}"
    return message
