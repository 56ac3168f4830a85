"""The seam through which event sources plug into the app.

Each trigger kind exposes ``install(<its store and the ports it needs>) -> Plugin``: the routes it serves on the
main port (signed, like the Lambda API), background tasks the app runs and cancels, an optional handler for *unsigned* requests it accepts
(function URLs with auth NONE, HTTP routes), and a hook called after every control-plane change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from squall.core.asgi import ASGIApp
from squall.core.ports import TriggerQuery

__all__ = ["Plugin"]


@dataclass
class Plugin:
    name: str
    #: Starlette routes
    routes: list[Any] = field(default_factory=list)
    #: started with the server, cancelled at shutdown
    tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    #: ``accepts(scope)`` is True for unsigned requests this plugin serves itself via ``public_app``
    accepts: Callable[[Any], bool] | None = None
    public_app: ASGIApp | None = None
    #: called with (function name, qualifier) after every control-plane change
    on_change: Callable[[str, str], Awaitable[None] | None] | None = None
    #: called at shutdown, after tasks are cancelled
    close: Callable[[], Awaitable[None] | None] | None = None
    #: what the dashboard reads of this kind's triggers (``core.ports.TriggerQuery``)
    query: TriggerQuery | None = None
