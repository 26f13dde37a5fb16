"""Reply helpers shared by the handlers and the error mapping."""

from __future__ import annotations

from ..results import Response as DbResponse
from .encoding import encode_error_text, encode_response, go_json
from .messages import Reply, Request

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


def empty(status: int = 200) -> Reply:
    return Reply(status)


def text(body: str, status: int = 200) -> Reply:
    return Reply(status, body.encode(), TEXT)


def json_obj(obj: object, pretty: bool = False, status: int = 200) -> Reply:
    return Reply(status, go_json(obj, pretty=pretty), JSON)


def text_error(message: str, status: int) -> Reply:
    return Reply(status, encode_error_text(message), TEXT)


def json_error(req: Request, message: str, status: int = 200) -> Reply:
    """`{"results":[],"error":...}`: rqlite's request-level error."""
    body = encode_response(DbResponse(error=message), pretty="pretty" in req.args)
    return Reply(status, body, JSON)
