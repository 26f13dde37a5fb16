"""Response helpers shared by the handlers and the error mapping."""

from __future__ import annotations

from flask import Response, request

from ..results import Response as DbResponse
from .encoding import encode_error_text, encode_response

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


def text_error(message: str, status: int) -> Response:
    return Response(encode_error_text(message), status=status, content_type=TEXT)


def json_error(message: str, status: int = 200) -> Response:
    """`{"results":[],"error":...}`: rqlite's request-level error."""
    pretty = "pretty" in request.args
    body = encode_response(DbResponse(error=message), pretty=pretty)
    return Response(body, status=status, content_type=JSON)
