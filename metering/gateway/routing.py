"""The gateway's routes as a table (path, methods, handler; mounts for groups), as
starlette does: ``Router`` answers 404 for a path it does not know and 405 (with
``Allow``) for a method a known path does not take, in one place. ``HEAD`` is allowed
wherever ``GET`` is. A path segment ``{name}`` matches one segment, given to the handler
as ``scope["path_params"]["name"]``. A route may name the error shape of its API
(``gateway.responses.ErrorStyle``): its 405 comes in that shape.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from metering.gateway.responses import SPEC_ERRORS, ErrorStyle, Receive, Scope, Send, send_error

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    methods: tuple[str, ...]
    handler: Handler
    errors: ErrorStyle = SPEC_ERRORS

    def allows(self, method: str) -> bool:
        return method in self.methods or (method == "HEAD" and "GET" in self.methods)


@dataclass(frozen=True, slots=True)
class Mount:
    """A group of routes under one path prefix."""

    prefix: str
    routes: tuple[Route | Mount, ...]


def flatten(entries: Iterable[Route | Mount], prefix: str = "") -> dict[str, list[Route]]:
    """Full path → its routes (one per method set), mounts expanded."""
    table: dict[str, list[Route]] = {}
    for entry in entries:
        if isinstance(entry, Mount):
            for path, routes in flatten(entry.routes, prefix + entry.prefix).items():
                table.setdefault(path, []).extend(routes)
        else:
            path = prefix + entry.path
            table.setdefault(path, []).append(
                Route(path, entry.methods, entry.handler, entry.errors)
            )
    return table


def _pattern(path: str) -> re.Pattern[str]:
    """``/v1/requests/{id}`` → a regex with one named group per ``{name}`` segment."""
    parts = [
        f"(?P<{part[1:-1]}>[^/]+)"
        if part.startswith("{") and part.endswith("}")
        else re.escape(part)
        for part in path.split("/")
    ]
    return re.compile("/".join(parts) + "$")


class Router:
    def __init__(self, entries: Iterable[Route | Mount]) -> None:
        self._table = flatten(entries)
        self._patterns = [(_pattern(p), p) for p in self._table if "{" in p]

    def _match(self, scope: Scope) -> list[Route] | None:
        path = scope["path"]
        routes = self._table.get(path)
        if routes is not None or not self._patterns:
            return routes
        for pattern, template in self._patterns:
            found = pattern.match(path)
            if found is not None:
                scope["path_params"] = found.groupdict()
                return self._table[template]
        return None

    @property
    def paths(self) -> dict[str, tuple[str, ...]]:
        """Every path and the methods it takes (for the docs and the tests)."""
        table = self._table
        return {path: tuple(m for r in routes for m in r.methods) for path, routes in table.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        routes = self._match(scope)
        if routes is None:
            await send_error(send, 404, "not_found", f"no endpoint {path}")
            return
        for route in routes:
            if route.allows(method):
                await route.handler(scope, receive, send)
                return
        allowed = sorted({m for r in routes for m in r.methods})
        await send_error(
            send,
            405,
            "method_not_allowed",
            f"{method} is not allowed on {path} (allowed: {', '.join(allowed)})",
            style=routes[0].errors,
            headers=[(b"allow", ", ".join(allowed).encode())],
        )
