"""The one place where exceptions become rqlite responses (API.md §a.5).

Request-level errors that rqlite reports inside a 200 JSON body stay 200;
malformed requests are 400 plain text; no leader is 503; everything else
unexpected is a 500 that names the error and leaves the node serving.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ..driver import ShutdownError
from ..results import Response as DbResponse
from ..store import LeaderNotFoundError, NotLeaderHere, StoreError
from .body import BodyError
from .encoding import encode_error_text, encode_response
from .params import ParamError

log = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


def text_error(message: str, status: int) -> Response:
    return Response(encode_error_text(message), status=status, content_type=TEXT)


def json_error(message: str) -> Response:
    pretty = "pretty" in request.args
    body = encode_response(DbResponse(error=message), pretty=pretty)
    return Response(body, status=200, content_type=JSON)


def register(app: Flask) -> None:
    @app.errorhandler(BodyError)
    @app.errorhandler(ParamError)
    def bad_request(e: ValueError) -> Response:
        return text_error(str(e), 400)

    @app.errorhandler(StoreError)
    def store_error(e: StoreError) -> Response:
        return json_error(str(e))

    @app.errorhandler(LeaderNotFoundError)
    def no_leader(e: LeaderNotFoundError) -> Response:
        return text_error("leader not found", 503)

    @app.errorhandler(NotLeaderHere)
    def not_leader(e: NotLeaderHere) -> Response:
        # Forwarding to the leader arrives with clusters; until then a
        # follower cannot serve leader-bound requests.
        return text_error("leader not found", 503)

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
