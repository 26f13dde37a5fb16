"""The one place where exceptions become rqlite responses (API.md §a.5).

Request-level errors that rqlite reports inside a 200 JSON body stay 200;
malformed requests are 400 plain text; no leader is 503; a queued write's
`wait` that runs out of time is 408; a disk that fails (full, I/O error) is
503 with rqlite's JSON error body (docs/extensions.md); everything else
unexpected is a 500 that names the error and leaves the node serving.
"""

from __future__ import annotations

import logging

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
from .messages import HttpError, Reply, Request
from .params import ParamError
from .responses import empty, json_error, text_error
from .routing import Context

log = logging.getLogger(__name__)


def to_reply(e: Exception, ctx: Context, req: Request) -> Reply:
    if isinstance(e, BodyError | ParamError | InvalidSQLiteError | NoStatementsError):
        return text_error(str(e), 400)
    if isinstance(e, QueueWaitTimeoutError):
        return text_error("queue wait timeout", 408)
    if isinstance(e, NotSingleNodeError):
        return text_error(str(e), 503)
    if isinstance(e, StoreError):
        return json_error(req, str(e))
    if isinstance(e, LeaderNotFoundError):
        return text_error("leader not found", 503)
    if isinstance(e, NotLeaderHere):
        return forward.to_leader(ctx, req)
    if isinstance(e, DiskError):
        # This node cannot write now; others may. A write that was already
        # waiting may still be committed by the cluster: 503 says only that
        # this node could not see it through.
        return json_error(req, str(e), 503)
    if isinstance(e, ShutdownError):
        return text_error("store not open", 503)
    if isinstance(e, HttpError):
        if e.status == 413:
            return text_error("request body too large", 413)
        if e.status == 401:
            reply = empty(401)
            reply.headers.append(("WWW-Authenticate", 'Basic realm="rqlite"'))
            return reply
        # rqlite answers unknown paths and wrong methods with an empty body.
        return empty(e.status)
    log.error("unexpected error serving %s %s", req.method, req.path, exc_info=e)
    return text_error(f"internal error: {e}", 500)
