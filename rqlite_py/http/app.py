"""The Flask application factory: blueprints, common headers, errors."""

from __future__ import annotations

from flask import Flask, Response, redirect, request

from .. import __version__
from ..store import Store
from . import cluster_api, db_api, errors, status_api
from .stats import HttpStats

VERSION_HEADER = f"v{__version__}"


def create_app(store: Store, *, max_body_bytes: int = 64 << 20, allow_origin: str = "") -> Flask:
    app = Flask("rqlite_py")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.extensions["store"] = store
    app.extensions["stats"] = HttpStats()
    app.register_blueprint(db_api.bp)
    app.register_blueprint(status_api.bp)
    app.register_blueprint(cluster_api.bp)
    errors.register(app)

    @app.route("/")
    def root() -> Response:
        return redirect("/console/", code=302)  # type: ignore[return-value]

    @app.before_request
    def options() -> Response | None:
        # rqlite answers OPTIONS on any path, known or not, with an empty 200.
        if request.method == "OPTIONS":
            return Response(b"", status=200)
        return None

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["X-RQLITE-VERSION"] = VERSION_HEADER
        resp.headers["Access-Control-Allow-Methods"] = "OPTIONS, GET, POST"
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
        if allow_origin:
            resp.headers["Access-Control-Allow-Origin"] = allow_origin
        return resp

    return app
