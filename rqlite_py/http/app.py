"""The application: routes a Request to its handler, maps errors in one
place (errors.py) and adds the headers every rqlite reply carries.

`App.handle` is synchronous and blocking (a write waits for the log); the
server (server.py) runs it on a worker thread, tests call it directly.
"""

from __future__ import annotations

from .. import __version__
from ..auth import CredentialStore, basic_credentials
from ..store import Store
from . import cluster_api, db_api, errors, status_api
from .messages import HttpError, Reply, Request
from .responses import empty
from .routing import Context, Route

VERSION_HEADER = f"v{__version__}"


class App:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._routes: dict[str, dict[str, Route]] = {}
        for route in db_api.ROUTES + status_api.ROUTES + cluster_api.ROUTES:
            for method in route.methods:
                self._routes.setdefault(route.path, {})[method] = route
        self._common = [
            ("X-RQLITE-VERSION", VERSION_HEADER),
            ("Access-Control-Allow-Methods", "OPTIONS, GET, POST"),
            ("Access-Control-Allow-Headers", "Content-Type"),
        ]
        if ctx.allow_origin:
            self._common.append(("Access-Control-Allow-Origin", ctx.allow_origin))

    @property
    def max_body_bytes(self) -> int:
        return self.ctx.max_body_bytes

    def handle(self, req: Request) -> Reply:
        try:
            reply = self._dispatch(req)
        except Exception as e:
            return self.error_reply(e, req)
        return self._with_common_headers(reply)

    def begin(self, req: Request) -> db_api.Begun | None:
        """Called on the event loop: a leader's POST /db/execute proposed, or
        a read begun, without a worker thread; or None (then `handle` on a
        worker)."""
        if len(req.body) > self.ctx.max_body_bytes:
            return None
        if self.ctx.auth is not None:
            route = self._routes.get(req.path, {}).get(req.method)
            if route is None or not self._allowed(req, route, on_loop=True):
                return None  # a worker answers it: 401, or after an scrypt check
        if req.path == "/db/execute":
            req.endpoint = db_api.execute.__name__
            return db_api.begin_execute(self.ctx, req)
        if req.path == "/db/query":
            req.endpoint = db_api.query.__name__
            return db_api.begin_query(self.ctx, req)
        return None

    def finish(self, begun: db_api.Begun) -> Reply | None:
        """On the event loop, the reply to a begun request whose future is
        done, or None: call `finish_slow` on a worker. Raises what the
        request failed with: the caller maps it on a worker (`error_reply`),
        since a lost leadership may mean forwarding."""
        reply = begun.finish()
        return None if reply is None else self._with_common_headers(reply)

    def finish_slow(self, begun: db_api.Begun, req: Request) -> Reply:
        """On a worker: the rest of a begun request that `finish` left."""
        assert begun.finish_slow is not None
        try:
            return self._with_common_headers(begun.finish_slow())
        except Exception as e:
            return self.error_reply(e, req)

    def error_reply(self, e: Exception, req: Request) -> Reply:
        """The reply to a request that failed, or that the server refused
        before it was whole."""
        return self._with_common_headers(errors.to_reply(e, self.ctx, req))

    def observe(self, req: Request, status: int, seconds: float) -> None:
        """Count a request that was answered (for /metrics)."""
        self.ctx.store.metrics.observe_http(req.endpoint, status, seconds)

    def _with_common_headers(self, reply: Reply) -> Reply:
        reply.headers.extend(self._common)
        return reply

    def _dispatch(self, req: Request) -> Reply:
        if req.method == "OPTIONS":
            # rqlite answers OPTIONS on any path, known or not, with an empty 200.
            return empty()
        if req.path == "/":
            return Reply(302, headers=[("Location", "/console/")])
        if len(req.body) > self.ctx.max_body_bytes:
            raise HttpError(413)
        methods = self._routes.get(req.path)
        if methods is None:
            raise HttpError(404)
        route = methods.get(req.method)
        if route is None:
            raise HttpError(405)
        req.endpoint = route.handler.__name__
        if not self._allowed(req, route):
            raise HttpError(401)
        return route.handler(self.ctx, req)

    def _allowed(self, req: Request, route: Route, *, on_loop: bool = False) -> bool:
        """With -auth, may this client use `route`? On the event loop, a
        password that needs an scrypt check (~50 ms) counts as not allowed:
        the worker that answers the request checks it."""
        auth = self.ctx.auth
        if auth is None:
            return True
        user, password = basic_credentials(req.headers.get("authorization"))
        if on_loop and not auth.allowed_quickly(user, password):
            return False
        return auth.allowed(user, password, *route.perms)


def create_app(
    store: Store,
    *,
    max_body_bytes: int = 64 << 20,
    allow_origin: str = "",
    auth: CredentialStore | None = None,
) -> App:
    return App(Context(store, max_body_bytes=max_body_bytes, allow_origin=allow_origin, auth=auth))
