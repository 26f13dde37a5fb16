"""The one place where exceptions become rqlite responses (API.md §a.5).

Request-level errors that rqlite reports inside a 200 JSON body stay 200;
malformed requests are 400 plain text; no leader is 503; a queued write's
`wait` that runs out of time is 408; a disk that fails (full, I/O error) is
503 with rqlite's JSON error body (docs/extensions.md); everything else
unexpected is a 500 that names the error and leaves the node serving.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..disk import DiskError
from ..driver import ShutdownError
from ..store import (
    InvalidSQLiteError,
    LeaderNotFoundError,
    NoStatementsError,
    NotLeaderHere,
    NotSingleNodeError,
    StoreError,
)
from ..write_queue import QueueWaitTimeoutError
from . import forward
from .body import BodyError
from .params import ParamError
from .responses import json_error, text_error

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    @app.errorhandler(BodyError)
    @app.errorhandler(ParamError)
    @app.errorhandler(NoStatementsError)
    def bad_request(e: ValueError) -> Response:
        return text_error(str(e), 400)

    @app.errorhandler(InvalidSQLiteError)
    def invalid_sqlite(e: InvalidSQLiteError) -> Response:
        return text_error(str(e), 400)

    @app.errorhandler(NotSingleNodeError)
    def not_single_node(e: NotSingleNodeError) -> Response:
        return text_error(str(e), 503)

    @app.errorhandler(StoreError)
    def store_error(e: StoreError) -> Response:
        return json_error(str(e))

    @app.errorhandler(LeaderNotFoundError)
    def no_leader(e: LeaderNotFoundError) -> Response:
        return text_error("leader not found", 503)

    @app.errorhandler(QueueWaitTimeoutError)
    def queue_wait_timeout(e: QueueWaitTimeoutError) -> Response:
        return text_error("queue wait timeout", 408)

    @app.errorhandler(NotLeaderHere)
    def not_leader(e: NotLeaderHere) -> Response:
        return forward.to_leader()

    @app.errorhandler(DiskError)
    def disk_error(e: DiskError) -> Response:
        # This node cannot write now; others may. A write that was already
        # waiting may still be committed by the cluster: 503 says only that
        # this node could not see it through.
        return json_error(str(e), 503)

    @app.errorhandler(ShutdownError)
    def shutting_down(e: ShutdownError) -> Response:
        return text_error("store not open", 503)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e: RequestEntityTooLarge) -> Response:
        return text_error("request body too large", 413)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        # rqlite answers unknown paths and wrong methods with an empty body.
        return Response(b"", status=e.code or 500)

    @app.errorhandler(Exception)
    def unexpected(e: Exception) -> Response:
        log.error("unexpected error serving %s %s", request.method, request.path, exc_info=e)
        return text_error(f"internal error: {e}", 500)
