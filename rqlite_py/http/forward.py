"""A follower's answer to a leader-bound request: forward it to the leader
(rqlite's default) or, with `?redirect`, send the client there (301)."""

from __future__ import annotations

import logging

import requests

from ..cluster import FORWARDED_HEADER
from . import params
from .messages import Reply, Request
from .responses import json_error, text_error
from .routing import Context

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_PASSED_HEADERS = ("Content-Type", "Authorization")
_RETURNED_HEADERS = ("X-RQLITE-SERVED-BY", "Location")


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
            api, req.method, req.target, req.body, headers, timeout_s, p.retries
        )
    except requests.RequestException as e:
        log.warning("forwarding %s to the leader at %s failed: %s", req.path, api, e)
        return json_error(req, f"forwarding to leader failed: {e}")
    out = Reply(r.status_code, r.content, r.headers.get("Content-Type", ""))
    out.headers = [(h, r.headers[h]) for h in _RETURNED_HEADERS if h in r.headers]
    return out
