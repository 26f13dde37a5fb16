"""The /db/* endpoints: execute, query, request and sql (API.md §a.6)."""

from __future__ import annotations

import os
import tempfile
import time
import zlib
from collections.abc import Iterator

from flask import Blueprint, Response, current_app, request

from .. import sql
from ..command import Statement
from ..disk import guarded
from ..results import Response as DbResponse
from ..store import Level, ReadOptions, SqlOptions, Store
from . import body, params
from .encoding import encode_response, go_json
from .params import QueryParams
from .responses import JSON

bp = Blueprint("db", __name__)


def _store() -> Store:
    return current_app.extensions["store"]


def _params() -> QueryParams:
    current_app.extensions["stats"].incr(f"requests.{request.endpoint}")
    return params.parse(request.args.to_dict(flat=True))


def _statements(p: QueryParams, *, allow_text: bool) -> list[Statement]:
    if request.method == "GET":
        if p.q is None:
            raise body.BodyError("no statements")
        return [Statement(p.q)]
    data = request.get_data()  # cached: a follower may forward it to the leader
    if allow_text and (request.content_type or "").startswith("text/plain"):
        return body.parse_text(data)
    return body.parse_json(data)


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


def _reply(resp: DbResponse, p: QueryParams, start: float) -> Response:
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
    r = Response(out, status=200, content_type=JSON)
    r.headers["X-RQLITE-SERVED-BY"] = _store().cfg.http_addr
    return r


@bp.route("/db/execute", methods=["POST"])
def execute() -> Response:
    start = time.perf_counter()
    p = _params()
    if p.queue:
        seq = _store().queue_write(
            body.parse_queued(request.get_data()),
            _sql_options(p),
            wait=p.wait,
            timeout_s=p.timeout_s,
            noleader=p.noleader,
        )
        return _reply(DbResponse(sequence_number=seq), p, start)
    stmts = _statements(p, allow_text=True)
    return _reply(_store().execute(stmts, _sql_options(p)), p, start)


@bp.route("/db/query", methods=["GET", "POST"])
def query() -> Response:
    start = time.perf_counter()
    p = _params()
    stmts = _statements(p, allow_text=True)
    return _reply(_store().query(stmts, _sql_options(p), _read_options(p)), p, start)


@bp.route("/db/request", methods=["POST"])
def unified() -> Response:
    start = time.perf_counter()
    p = _params()
    stmts = _statements(p, allow_text=False)
    return _reply(_store().request(stmts, _sql_options(p), _read_options(p)), p, start)


@bp.route("/db/sql", methods=["GET", "POST"])
def show_sql() -> Response:
    """What a statement becomes before it enters the log; the database is
    not touched."""
    p = _params()
    results = []
    for s in _statements(p, allow_text=False):
        if sql.is_disallowed_pragma(s.sql):
            results.append({"original": s.sql, "error": "disallowed pragma"})
            continue
        rewritten = s.sql
        if not p.noparse:
            rewritten = sql.rewrite(
                s.sql, rewrite_random=not p.norwrandom, rewrite_time=not p.norwtime
            )
        results.append({"original": s.sql, "rewritten": rewritten})
    return Response(go_json({"results": results}, pretty=p.pretty), 200, content_type=JSON)


@bp.route("/db/backup", methods=["GET"])
def backup() -> Response:
    """A consistent copy of the database: SQLite file (fmt=binary, or
    fmt=delete for DELETE journal mode) or SQL dump (fmt=sql), optionally
    gzip-compressed; served by the leader unless `noleader`."""
    p = _params()
    store = _store()
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
    return Response(
        _stream_and_remove(path, p.compress),
        status=200,
        content_type=content_type,
        headers={"Content-Encoding": "gzip"} if p.compress else {},
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


@bp.route("/db/load", methods=["POST"])
def load() -> Response:
    """A SQLite file (replaces the database on every node, through the log)
    or an SQL dump (run as one statement string, undone on error)."""
    start = time.perf_counter()
    p = _params()
    return _reply(_store().load(request.get_data()), p, start)


@bp.route("/boot", methods=["POST"])
def boot() -> Response:
    """Single node only: take a SQLite file as the database, bypassing the log."""
    _params()
    _store().boot(request.get_data())
    return Response(b"", status=200)
