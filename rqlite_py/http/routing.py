"""What every handler is given (the node's Context) and how a module
declares its endpoints (Route)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..store import Store
from .messages import Reply, Request
from .stats import HttpStats


@dataclass
class Context:
    store: Store
    stats: HttpStats = field(default_factory=HttpStats)
    max_body_bytes: int = 64 << 20
    allow_origin: str = ""


Handler = Callable[[Context, Request], Reply]


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    handler: Handler
