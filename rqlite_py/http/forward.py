"""A follower's answer to a leader-bound request: forward it to the leader
(rqlite's default) or, with `?redirect`, send the client there (301)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import requests
import urllib3

from ..cluster import FORWARDED_HEADER
from . import params
from .messages import Reply, Request
from .responses import json_error, text_error
from .routing import Context

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_PASSED_HEADERS = ("Content-Type", "Authorization")
_RETURNED_HEADERS = ("X-RQLITE-SERVED-BY", "Location", "Content-Encoding")
READ_AT_ONCE_BYTES = 1 << 20
"""A leader's reply up to this size is read whole; a larger one (a backup)
is relayed as it arrives, so a follower never holds a whole database."""


def to_leader(ctx: Context, req: Request) -> Reply:
    store = ctx.store
    if req.headers.get(FORWARDED_HEADER.lower()):
        # The node that forwarded this believed we lead; we do not. Never
        # forward twice: the client retries once the cluster settles.
        return text_error("leader not found", 503)
    api = store.leader_api_addr()
    if not api:
        return text_error("leader not found", 503)
    if "redirect" in req.args:
        return Reply(301, headers=[("Location", api + req.target)])
    # Already validated by the handler that raised NotLeaderHere.
    p = params.parse(req.args)
    timeout_s = p.timeout_s or DEFAULT_TIMEOUT_S
    headers = {h: req.headers[h.lower()] for h in _PASSED_HEADERS if h.lower() in req.headers}
    try:
        r = store.cluster.forward(
            api, req.method, req.target, req.body, headers, timeout_s, p.retries, stream=True
        )
        body = _body(r)
    except (requests.RequestException, urllib3.exceptions.HTTPError) as e:
        log.warning("forwarding %s to the leader at %s failed: %s", req.path, api, e)
        return json_error(req, f"forwarding to leader failed: {e}")
    out = Reply(r.status_code, body, r.headers.get("Content-Type", ""))
    out.headers = [(h, r.headers[h]) for h in _RETURNED_HEADERS if h in r.headers]
    return out


def _body(r: requests.Response) -> bytes | Iterator[bytes]:
    """The leader's body as it was sent: a gzip backup stays compressed,
    with its Content-Encoding passed on."""
    length = r.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= READ_AT_ONCE_BYTES:
        try:
            return r.raw.read(decode_content=False)
        finally:
            r.close()
    return _relay(r)


def _relay(r: requests.Response) -> Iterator[bytes]:
    """A MiB at a time. Should the leader fail midway, the client's
    chunked reply ends without its last chunk: a truncation it can see."""
    try:
        yield from r.raw.stream(1 << 20, decode_content=False)
    finally:
        r.close()
