"""The dashboard's HTTP routes: ``/ui`` (the single-page app), ``/ui/login``, ``/ui/logout`` and ``/ui/static``.

The app is plain HTML + JavaScript + CSS shipped as package data (no build step); charts use the vendored uPlot
(``static/vendor/uplot``).  Pages are hash routes of ``/ui`` (``#/functions/NAME``, ``#/invocations``, ...)
that read the JSON API under ``/_squall/api/`` with the session cookie.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from squall.dashboard.ui.sessions import COOKIE, Sessions, cookie_value

__all__ = ["STATIC_DIR", "ui_routes"]

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"
_MAX_FORM_BYTES = 16 * 1024


def _page(name: str) -> str:
    return (TEMPLATES_DIR / name).read_text(encoding="utf-8")


def _safe_next(value: str | None) -> str:
    """Only local dashboard paths may be redirected to after login."""
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return "/ui"


def ui_routes(sessions: Sessions, *, secure_cookie: bool = False) -> list[BaseRoute]:
    """Routes of the dashboard (the SigV4 middleware's session gate protects everything but login and static)."""

    async def index(request: Request) -> Response:
        csrf = sessions.csrf_token(cookie_value(dict(request.headers))) or ""
        body = _page("index.html").replace("{{csrf}}", html.escape(csrf, quote=True))
        return HTMLResponse(body, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    def login_page(error: str = "", next_url: str = "/ui", status: int = 200) -> Response:
        body = (
            _page("login.html")
            .replace("{{error}}", f'<p class="login-error" role="alert">{html.escape(error)}</p>' if error else "")
            .replace("{{next}}", html.escape(next_url, quote=True))
        )
        return HTMLResponse(body, status, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})

    async def login_form(request: Request) -> Response:
        return login_page(next_url=_safe_next(request.query_params.get("next")))

    async def login(request: Request) -> Response:
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > _MAX_FORM_BYTES:
                return login_page("The form is too large.", status=413)
        form = parse_qs(raw.decode("utf-8", "replace"))
        key_id = (form.get("access_key_id") or [""])[0].strip()
        secret = (form.get("secret_access_key") or [""])[0].strip()
        next_url = _safe_next((form.get("next") or [""])[0])
        token = sessions.login(key_id, secret) if key_id and secret else None
        if token is None:
            return login_page(
                "Those credentials are not the admin key. Use the access key id and secret that `squall up` "
                "printed (or SQUALL_ACCESS_KEY_ID / SQUALL_SECRET_ACCESS_KEY).",
                next_url,
                status=401,
            )
        response = RedirectResponse(next_url, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(sessions.ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=secure_cookie,
        )
        return response

    async def logout(request: Request) -> Response:
        # reached only with a valid session and its CSRF header (the session gate checks both for POST)
        sessions.logout(cookie_value(dict(request.headers)))
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def to_ui(_: Request) -> Response:
        return RedirectResponse("/ui", status_code=307)

    return [
        Route("/ui", index, methods=["GET"]),
        Route("/ui/", to_ui, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        Mount("/ui/static", app=StaticFiles(directory=STATIC_DIR), name="ui-static"),
    ]
