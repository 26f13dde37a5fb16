"""SQL text at ingress: make statements deterministic, spot RETURNING, refuse PRAGMAs.

rqlite replicates statements, not rows. A statement that calls RANDOM() or reads
the clock would store different data on every node, so the node that first
receives a write replaces those calls with literals before the statement enters
the Raft log (API.md §d); every replica then applies the same text. Everything
here is pure (no IO, no SQLite): it runs on the request path only, never in the
state machine.

Choices, and where they depart from rqlite:

- In-place rewriting. rqlite parses the statement into an AST and re-serialises
  all of it (identifiers come back double-quoted). Here only the tokens of a
  rewritten call, or of its 'now' argument, are replaced; every other byte stays
  as the client sent it. Strings, comments and quoted identifiers are single
  tokens of sqlparse's stream, so 'random()' inside a string or a column named
  date are never touched. /db/sql therefore shows a `rewritten` text closer to the
  input than rqlite's; what reaches SQLite is equivalent.
- A SQLite lexer. sqlparse's default lexer mixes dialects: it reads a backslash
  as an escape inside quotes (so 'C:\\' would swallow the next string and expose
  its contents as code) and `# ` as a comment. A private Lexer instance keeps
  sqlparse's rules but uses SQLite's for strings and comments; sqlparse's shared
  default lexer is never modified. A statement the lexer cannot read (an
  unterminated string, a stray character) is left unchanged, like a statement
  rqlite cannot parse.
- A cheap lower-case substring test runs first, as in rqlite, so ordinary
  statements never reach the lexer and come back as the very same string.
- Stored expressions are not rewritten: CREATE and ALTER statements keep their
  calls, except in the SELECT of CREATE TABLE ... AS. A DEFAULT, view, trigger or
  index stores the expression itself; a literal there would freeze one value for
  ever, or turn SQLite's "non-deterministic use of ..." error into success.
  API.md §d lists defaults and triggers as not handled.
- One Julian day per call of rewrite() (rqlite: per statement); a multi-statement
  string gets one timestamp for all its statements.
- Left alone, as unknowable from tokens: quoted function names ("random"()), and
  calls inside $tag$...$tag$ spans, which sqlparse lexes as literals in every
  dialect. randomblob(N) above SQLite's default maximum blob size is left alone
  too: SQLite then fails identically on every node, instead of the leader
  building a multi-gigabyte literal.
- Disallowed PRAGMAs (§f) are looked for in every statement of a string, with
  comments ignored, a schema prefix accepted on every name and the PRAGMA
  name(value) form treated like name=value. rqlite checks only the start of the
  string, and its regex misses main.wal_autocheckpoint= and journal_mode(...).
  max_page_count= is refused as well (see is_disallowed_pragma).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlparse import keywords
from sqlparse import tokens as T
from sqlparse.engine import StatementSplitter
from sqlparse.exceptions import SQLParseError
from sqlparse.lexer import Lexer
from sqlparse.sql import Token

_JD_OF_UNIX_EPOCH = 2440587.5
_SECONDS_PER_DAY = 86400.0
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_BLOB_BYTES = 1_000_000_000
"""SQLITE_MAX_LENGTH's default: randomblob() larger than this fails in SQLite."""

_RANDOM_MARKERS = ("random(", "randomblob(")
_TIME_MARKERS = ("time(", "date(", "julianday(", "unixepoch(", "timediff(")
"""rqlite's pre-filter; time( also catches datetime( and strftime(."""

_RANDOM_FUNCS = frozenset({"random", "randomblob"})
_NOW_ARGS: dict[str, tuple[int, ...]] = {
    "date": (0,),
    "time": (0,),
    "datetime": (0,),
    "julianday": (0,),
    "unixepoch": (0,),
    "strftime": (1,),
    "timediff": (0, 1),
}
"""Argument positions that may hold 'now'; a call with fewer arguments is kept."""
_TIME_FUNCS = frozenset(_NOW_ARGS)

_ORDER_BY_ENDS = frozenset({"LIMIT", "ROWS", "RANGE", "GROUPS", "ON", "RETURNING"})
"""Keywords that end an ORDER BY list at its own nesting depth."""
_CTE_BODY_STARTS = frozenset({"(", "MATERIALIZED", "NOT"})
"""After `name(cols) AS`, these mean a CTE definition, not a call."""

_DISALLOWED_PRAGMA = re.compile(
    r"""^\s*PRAGMA\s+
    (?:(?:\w+|"(?:[^"]|"")*"|\[[^\]]*\]|`(?:[^`]|``)*`)\s*\.\s*)?    # schema.
    ["`\[]?
    (?:(?:journal_mode|wal_autocheckpoint|synchronous|query_only|max_page_count)["`\]]?\s*[=(]
      |wal_checkpoint)
    """,
    re.IGNORECASE | re.VERBOSE,
)


def _sqlite_lexer() -> Lexer:
    """sqlparse's rules, with SQLite's strings and comments in front.

    Rules are tried in order, so ours win; sqlparse's versions of the same token
    types are dropped so that none of them can match a backslash escape or `#`.
    """
    ours = [
        (r"--[^\n]*\n?", T.Comment.Single),
        (r"/\*[\s\S]*", T.Comment.Multiline),  # reached only when `*/` is missing
        (r"'(?:''|[^'])*'", T.String.Single),
        (r'"(?:""|[^"])*"', T.String.Symbol),
    ]
    replaced = (T.Comment.Single, T.String.Single, T.String.Symbol, T.Keyword.TZCast)
    theirs = [
        (regex, action)
        for regex, action in keywords.SQL_REGEX
        if action is keywords.PROCESS_AS_KEYWORD or not any(action in kind for kind in replaced)
    ]
    lexer = Lexer()
    lexer.default_initialization()
    lexer.set_SQL_REGEX(ours + theirs)
    return lexer


_LEXER = _sqlite_lexer()


@dataclass(frozen=True, slots=True)
class _Options:
    names: frozenset[str]
    """Lower-case names of the functions to rewrite."""
    rng: random.Random
    now_text: str


@dataclass(frozen=True, slots=True)
class _Call:
    """A function call; positions index the statement's significant tokens."""

    name: str
    start: int
    stop: int
    """Position of the closing parenthesis."""
    args: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class _Edit:
    """Replace tokens [start, stop) of a statement by text."""

    start: int
    stop: int
    text: str


def julian_day(unix_s: float) -> float:
    """The Julian day SQLite's date functions read from a bare number."""
    return unix_s / _SECONDS_PER_DAY + _JD_OF_UNIX_EPOCH


def rewrite(
    sql: str,
    *,
    rewrite_random: bool = True,
    rewrite_time: bool = True,
    rng: random.Random | None = None,
    now_julian: float | None = None,
) -> str:
    """Replace RANDOM(), RANDOMBLOB(N) and 'now' by literals (API.md §d).

    The result is what enters the Raft log, so every node applies the same
    values. RANDOM() becomes a signed 64-bit integer, RANDOMBLOB(N) with a
    literal N an x'..' blob of max(N, 1) bytes, except inside ORDER BY terms,
    where the caller asked for a random order, not a random value. 'now' (any
    case, quoted or bare) as the date argument of date, time, datetime,
    julianday, unixepoch, strftime (second argument) and timediff (both) becomes
    the current Julian day with 6 decimals. `rng` and `now_julian` are injected
    by tests; by default values come from the OS and the wall clock.
    """
    lowered = sql.lower()
    names: frozenset[str] = frozenset()
    if rewrite_random and any(marker in lowered for marker in _RANDOM_MARKERS):
        names |= _RANDOM_FUNCS
    if rewrite_time and any(marker in lowered for marker in _TIME_MARKERS):
        names |= _TIME_FUNCS
    if not names:
        return sql
    jd = julian_day(time.time()) if now_julian is None else now_julian
    opts = _Options(names, rng or random.SystemRandom(), f"{jd:.6f}")
    try:
        statements = _statements(sql)
    except SQLParseError:
        return sql
    pieces: list[str] = []
    consumed = 0
    for toks in statements:
        edits = _statement_edits(toks, opts)
        pieces.append(_apply(toks, edits))
        consumed += sum(len(tok.value) for tok in toks)
    return "".join(pieces) + sql[consumed:]


def has_returning(sql: str) -> bool:
    """Whether a statement has a RETURNING clause, so it answers with rows.

    rqlite marks such statements "force query" (API.md §a.4). RETURNING is a
    reserved word in SQLite, so outside strings, comments and quoted identifiers
    it can only start that clause.
    """
    if "returning" not in sql.lower():
        return False
    # Any token type: sqlparse lexes RETURNING(id) as a name.
    return any(value.upper() == "RETURNING" for _, value in _LEXER.get_tokens(sql))


def is_disallowed_pragma(sql: str) -> bool:
    """Whether any statement sets a PRAGMA that would break the database layer.

    The node owns the journal mode, checkpointing and sync level (API.md §e), and
    a query_only connection could not apply the log; such requests are refused
    whole with "disallowed pragma" (§f). max_page_count too (ours): a database
    that reaches it fails with SQLITE_FULL, which the state machine must treat
    as a full disk (retry), never as a result, and page counts differ between
    replicas. Reading a value (no `=`) is allowed.
    """
    if "pragma" not in sql.lower():
        return False
    return any(_DISALLOWED_PRAGMA.match(_without_comments(toks)) for toks in _statements(sql))


def split_statements(sql: str) -> list[str]:
    """The statements of a text body, each with its own text (and `;`).

    Semicolons inside strings, comments and trigger bodies do not split.
    Statements made only of whitespace and comments are dropped.
    """
    return [
        "".join(tok.value for tok in toks).strip()
        for toks in _statements(sql)
        if not all(_is_blank(tok) for tok in toks)
    ]


def is_empty(sql: str) -> bool:
    """Whether SQL holds no statement at all: whitespace, `;` and comments only.

    Such strings are skipped without a result entry, as rqlite skips "".
    """
    if not sql.strip(" \t\n\r\f;"):
        return True
    if "--" not in sql and "/*" not in sql:
        return False
    return all(_is_blank(Token(ttype, value)) for ttype, value in _LEXER.get_tokens(sql))


def _statements(sql: str) -> list[list[Token]]:
    """Token lists of the statements in sql, which concatenate back to sql."""
    return [stmt.tokens for stmt in StatementSplitter().process(_LEXER.get_tokens(sql))]


def _is_significant(tok: Token) -> bool:
    return not (tok.ttype in T.Whitespace or tok.ttype in T.Comment)


def _is_blank(tok: Token) -> bool:
    return not _is_significant(tok) or tok.match(T.Punctuation, ";")


def _without_comments(toks: Sequence[Token]) -> str:
    return "".join(tok.value if tok.ttype not in T.Comment else " " for tok in toks)


def _word(tok: Token) -> str:
    """Upper-case text of a keyword, name or punctuation token, else ""."""
    if tok.ttype in T.Keyword or tok.ttype in T.Name or tok.ttype in T.Punctuation:
        return " ".join(tok.value.upper().split())
    return ""


def _at(words: Sequence[str], k: int) -> str:
    return words[k] if 0 <= k < len(words) else ""


def _statement_edits(toks: Sequence[Token], opts: _Options) -> list[_Edit]:
    """The replacements for one statement, scanning its significant tokens."""
    if any(tok.ttype in T.Error for tok in toks):
        return []
    sig = [i for i, tok in enumerate(toks) if _is_significant(tok)]
    words = [_word(toks[i]) for i in sig]
    edits: list[_Edit] = []
    depth = 0
    order_by: list[int] = []  # depths of the ORDER BY lists the scan is inside
    k = _rewrite_start(words)
    while k < len(sig):
        word = words[k]
        if word == "(":
            depth += 1
        elif word == ")":
            depth -= 1
            while order_by and order_by[-1] > depth:
                order_by.pop()
        elif word == "ORDER BY" or (word == "ORDER" and _at(words, k + 1) == "BY"):
            order_by.append(depth)
        elif word in _ORDER_BY_ENDS and order_by and order_by[-1] == depth:
            order_by.pop()
        elif (call := _call_at(toks, sig, words, k, opts.names)) is not None:
            if call.name in _NOW_ARGS:
                edits += _now_edits(call, toks, sig, opts.now_text)
            elif not order_by and (text := _random_literal(call, toks, sig, opts.rng)):
                edits.append(_Edit(sig[call.start], sig[call.stop] + 1, text))
                k = call.stop  # the arguments went with the call
        k += 1
    return edits


def _rewrite_start(words: Sequence[str]) -> int:
    """First token that may be rewritten: none in DDL but CREATE TABLE ... AS."""
    first, second, third = _at(words, 0), _at(words, 1), _at(words, 2)
    if first == "ALTER":
        return len(words)
    if not first.startswith("CREATE"):
        return 0
    if second == "TABLE" or (second in ("TEMP", "TEMPORARY") and third == "TABLE"):
        depth = 0
        for k, word in enumerate(words):
            depth += (word == "(") - (word == ")")
            if depth == 0 and word == "AS":
                return k + 1
    return len(words)


def _call_at(
    toks: Sequence[Token], sig: Sequence[int], words: Sequence[str], k: int, names: frozenset[str]
) -> _Call | None:
    """The call of a function in names starting at k, if it is one.

    A name before `(` is a table, not a call, after `.` (schema.table) or INTO
    (INSERT INTO random(x) ...), and before `AS (` (a CTE named date(...)).
    """
    tok = toks[sig[k]]
    if not (tok.ttype in T.Name or tok.ttype in T.Keyword) or tok.value.lower() not in names:
        return None
    if _at(words, k + 1) != "(" or _at(words, k - 1) in (".", "INTO"):
        return None
    found = _args(words, k + 1)
    if found is None:
        return None
    args, stop = found
    if _at(words, stop + 1) == "AS" and _at(words, stop + 2) in _CTE_BODY_STARTS:
        return None
    return _Call(tok.value.lower(), k, stop, args)


def _args(words: Sequence[str], open_k: int) -> tuple[tuple[tuple[int, ...], ...], int] | None:
    """Arguments (token positions) and closing position of the call opened at open_k."""
    args: list[tuple[int, ...]] = []
    current: list[int] = []
    depth = 0
    for k in range(open_k + 1, len(words)):
        word = words[k]
        if depth == 0 and word == ")":
            args.append(tuple(current))  # f() has one empty argument
            return tuple(args), k
        if depth == 0 and word == ",":
            args.append(tuple(current))
            current = []
            continue
        depth += (word == "(") - (word == ")")
        current.append(k)
    return None


def _now_edits(
    call: _Call, toks: Sequence[Token], sig: Sequence[int], now_text: str
) -> list[_Edit]:
    positions = _NOW_ARGS[call.name]
    if len(call.args) <= max(positions):
        return []
    return [
        _Edit(sig[arg[0]], sig[arg[0]] + 1, now_text)
        for arg in (call.args[p] for p in positions)
        if len(arg) == 1 and _is_now(toks[sig[arg[0]]])
    ]


def _is_now(tok: Token) -> bool:
    """'now' in any case, single- or double-quoted, or bare, as rqlite accepts."""
    if tok.ttype in T.String.Single or tok.ttype in T.String.Symbol:
        return tok.value[1:-1].lower() == "now"
    return (tok.ttype in T.Name or tok.ttype in T.Keyword) and tok.value.lower() == "now"


def _random_literal(
    call: _Call, toks: Sequence[Token], sig: Sequence[int], rng: random.Random
) -> str | None:
    if call.name == "random":
        return str(rng.randint(_INT64_MIN, _INT64_MAX))
    if len(call.args) != 1 or len(call.args[0]) != 1:
        return None
    tok = toks[sig[call.args[0][0]]]
    if tok.ttype not in T.Number.Integer or not (tok.value.isascii() and tok.value.isdigit()):
        return None
    size = max(int(tok.value), 1)
    if size > _MAX_BLOB_BYTES:
        return None
    return f"x'{rng.randbytes(size).hex().upper()}'"


def _apply(toks: Sequence[Token], edits: Sequence[_Edit]) -> str:
    out: list[str] = []
    pos = 0
    for edit in sorted(edits, key=lambda e: e.start):
        out += (tok.value for tok in toks[pos : edit.start])
        after = toks[edit.stop].value if edit.stop < len(toks) else ""
        out.append(_glue(out[-1] if out else "", edit.text, after))
        pos = edit.stop
    out += (tok.value for tok in toks[pos:])
    return "".join(out)


def _glue(before: str, text: str, after: str) -> str:
    """Pad a literal so it cannot fuse with its neighbours.

    5-random() must not become the comment 5--42, nor random()AS r the bad
    token 42AS.
    """
    if before.endswith("-") and text.startswith("-"):
        text = " " + text
    if after and _is_ident_char(after[0]) and _is_ident_char(text[-1]):
        text += " "
    return text


def _is_ident_char(char: str) -> bool:
    return char.isalnum() or char in "_$"
