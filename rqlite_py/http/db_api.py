"""The /db/* endpoints: execute, query, request and sql (API.md §a.6)."""

from __future__ import annotations

import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .. import sql
from ..command import Statement
from ..disk import guarded
from ..results import Response as DbResponse
from ..store import Level, ReadOptions, SqlOptions
from . import body, params
from .encoding import encode_response
from .messages import Reply, Request
from .params import QueryParams
from .responses import JSON, empty, json_obj
from .routing import Context, Route


def _params(ctx: Context, req: Request) -> QueryParams:
    ctx.stats.incr(f"requests.{req.endpoint}")
    return params.parse(req.args)


def _statements(req: Request, p: QueryParams, *, allow_text: bool) -> list[Statement]:
    if req.method == "GET":
        if p.q is None:
            raise body.BodyError("no statements")
        return [Statement(p.q)]
    if allow_text and req.content_type.startswith("text/plain"):
        return body.parse_text(req.body)
    return body.parse_json(req.body)


def _sql_options(p: QueryParams) -> SqlOptions:
    return SqlOptions(
        transaction=p.transaction,
        db_timeout_s=p.db_timeout_s,
        noparse=p.noparse,
        norwrandom=p.norwrandom,
        norwtime=p.norwtime,
        qualify_columns=p.qualify_columns,
    )


def _read_options(p: QueryParams) -> ReadOptions:
    return ReadOptions(
        level=Level.parse(p.level),
        freshness_s=p.freshness_s,
        freshness_strict=p.freshness_strict,
        linearizable_timeout_s=p.linearizable_timeout_s,
    )


def _reply(ctx: Context, resp: DbResponse, p: QueryParams, start: float) -> Reply:
    if not p.raft_index:
        resp.raft_index = 0
    resp.time = time.perf_counter() - start
    out = encode_response(
        resp,
        pretty=p.pretty,
        timings=p.timings,
        associative=p.associative,
        blob_array=p.blob_array,
    )
    return Reply(200, out, JSON, [("X-RQLITE-SERVED-BY", ctx.store.cfg.http_addr)])


def execute(ctx: Context, req: Request) -> Reply:
    start = time.perf_counter()
    p = _params(ctx, req)
    if p.queue:
        seq = ctx.store.queue_write(
            body.parse_queued(req.body),
            _sql_options(p),
            wait=p.wait,
            timeout_s=p.timeout_s,
            noleader=p.noleader,
        )
        return _reply(ctx, DbResponse(sequence_number=seq), p, start)
    stmts = _statements(req, p, allow_text=True)
    return _reply(ctx, ctx.store.execute(stmts, _sql_options(p)), p, start)


@dataclass
class Begun:
    """A request begun on the event loop: once `future` is done (None:
    nothing to wait for; `timeout_s` at most), `finish()` builds the reply
    without blocking, or answers None when the rest must run on a worker
    thread, through `finish_slow()`."""

    future: Future[Any] | None
    timeout_s: float
    finish: Callable[[], Reply | None]
    finish_slow: Callable[[], Reply] | None = None


def begin_execute(ctx: Context, req: Request) -> Begun | None:
    """The common write, started on the event loop with no worker thread:
    POST /db/execute on the leader, no queue. None when the request needs
    the full handler (on a worker): anything else, or any error on the way,
    which the handler then meets and answers again."""
    store = ctx.store
    if req.method != "POST" or not store.is_leader():
        return None
    start = time.perf_counter()
    try:
        p = params.parse(req.args)
        if p.queue:
            return None
        begun = store.begin_execute(_statements(req, p, allow_text=True), _sql_options(p))
    except Exception:
        return None
    if isinstance(begun, DbResponse):
        return None  # nothing to write: cheap either way
    ctx.stats.incr(f"requests.{req.endpoint}")  # counted once it cannot fall back
    proposal = begun
    return Begun(
        proposal.future, proposal.timeout_s, lambda: _reply(ctx, proposal.response(), p, start)
    )


def begin_query(ctx: Context, req: Request) -> Begun | None:
    """A read served from the event loop (Store.begin_query): no worker
    thread unless it proves long. None, as for begin_execute, when the
    request needs the full handler."""
    start = time.perf_counter()
    try:
        p = params.parse(req.args)
        read = ctx.store.begin_query(
            _statements(req, p, allow_text=True), _sql_options(p), _read_options(p)
        )
    except Exception:
        return None
    if read is None:
        return None
    ctx.stats.incr(f"requests.{req.endpoint}")

    def finish() -> Reply | None:
        resp = read.response()
        return None if resp is None else _reply(ctx, resp, p, start)

    return Begun(
        read.future,
        read.timeout_s,
        finish,
        lambda: _reply(ctx, read.response_slow(), p, start),
    )


def query(ctx: Context, req: Request) -> Reply:
    start = time.perf_counter()
    p = _params(ctx, req)
    stmts = _statements(req, p, allow_text=True)
    return _reply(ctx, ctx.store.query(stmts, _sql_options(p), _read_options(p)), p, start)


def unified(ctx: Context, req: Request) -> Reply:
    start = time.perf_counter()
    p = _params(ctx, req)
    stmts = _statements(req, p, allow_text=False)
    return _reply(ctx, ctx.store.request(stmts, _sql_options(p), _read_options(p)), p, start)


def show_sql(ctx: Context, req: Request) -> Reply:
    """What a statement becomes before it enters the log; the database is
    not touched."""
    p = _params(ctx, req)
    results = []
    for s in _statements(req, p, allow_text=False):
        if sql.is_disallowed_pragma(s.sql):
            results.append({"original": s.sql, "error": "disallowed pragma"})
            continue
        rewritten = s.sql
        if not p.noparse:
            rewritten = sql.rewrite(
                s.sql, rewrite_random=not p.norwrandom, rewrite_time=not p.norwtime
            )
        results.append({"original": s.sql, "rewritten": rewritten})
    return json_obj({"results": results}, p.pretty)


def backup(ctx: Context, req: Request) -> Reply:
    """A consistent copy of the database: SQLite file (fmt=binary, or
    fmt=delete for DELETE journal mode) or SQL dump (fmt=sql), optionally
    gzip-compressed; served by the leader unless `noleader`."""
    p = _params(ctx, req)
    store = ctx.store
    fmt = p.fmt or "binary"
    with guarded():  # the copy goes to the data directory: it may be full
        fd, path = tempfile.mkstemp(suffix=".backup", dir=store.cfg.data_dir)
    os.close(fd)
    try:
        store.backup(path, fmt=fmt, vacuum=p.vacuum, tables=p.tables, noleader=p.noleader)
    except BaseException:
        os.remove(path)
        raise
    content_type = "application/sql" if fmt == "sql" else "application/octet-stream"
    return Reply(
        200,
        _stream_and_remove(path, p.compress),
        content_type,
        [("Content-Encoding", "gzip")] if p.compress else [],
    )


def _stream_and_remove(path: str, compress: bool) -> Iterator[bytes]:
    gz = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None  # 31: gzip framing
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield gz.compress(chunk) if gz else chunk
        if gz:
            yield gz.flush()
    finally:
        os.remove(path)


def load(ctx: Context, req: Request) -> Reply:
    """A SQLite file (replaces the database on every node, through the log)
    or an SQL dump (run as one statement string, undone on error)."""
    start = time.perf_counter()
    p = _params(ctx, req)
    return _reply(ctx, ctx.store.load(req.body), p, start)


def boot(ctx: Context, req: Request) -> Reply:
    """Single node only: take a SQLite file as the database, bypassing the log."""
    _params(ctx, req)
    ctx.store.boot(req.body)
    return empty()


ROUTES = [
    Route("/db/execute", ("POST",), execute, ("execute",)),
    Route("/db/query", ("GET", "POST"), query, ("query",)),
    Route("/db/request", ("POST",), unified, ("execute", "query")),
    Route("/db/sql", ("GET", "POST"), show_sql, ("query",)),
    Route("/db/backup", ("GET",), backup, ("backup",)),
    Route("/db/load", ("POST",), load, ("load",)),
    Route("/boot", ("POST",), boot, ("load",)),
]
