"""What running SQL produces, before it is encoded for a client.

db.py fills these in; http/encoding.py renders them exactly as rqlite does.
Values are plain Python: int, float, str, bytes (a BLOB), bool (a column
declared BOOLEAN), None. Columns declared DATE/DATETIME/TIMESTAMP arrive
already rendered as RFC3339 strings, as rqlite's Go driver does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Value = int | float | str | bytes | bool | None


@dataclass(slots=True)
class ExecuteResult:
    last_insert_id: int = 0
    rows_affected: int = 0
    error: str = ""
    time: float = 0.0


@dataclass(slots=True)
class QueryResult:
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    values: list[list[Value]] = field(default_factory=list)
    error: str = ""
    time: float = 0.0


Result = ExecuteResult | QueryResult


@dataclass(slots=True)
class Response:
    """One /db/* response: `{"results": [...], "error", "time", ...}`."""

    results: list[Result] = field(default_factory=list)
    error: str = ""
    time: float = 0.0
    sequence_number: int = 0
    raft_index: int = 0
