"""Browser sessions for the dashboard: the same admin key as SigV4, entered once on /ui/login.

Browsers cannot sign requests, so ``POST /ui/login`` checks the admin access key id and secret (the key that
``squall up`` prints, or SQUALL_ACCESS_KEY_ID/SQUALL_SECRET_ACCESS_KEY; functions' scoped keys are refused) and
sets a session cookie: a random 256-bit token, kept server-side (in memory: a restart logs everyone out),
``HttpOnly; SameSite=Strict; Path=/``, expiring after ``ttl_s``.

``SessionGate`` is what ``SigV4Middleware`` asks about unsigned requests:

* ``/ui`` pages with a valid cookie are served; without one, browsers are redirected to ``/ui/login``;
* ``/_squall/api/*`` with a valid cookie is accepted for GET/HEAD; any other method also needs the
  ``X-Squall-CSRF`` header carrying the session's CSRF token (a cross-site form cannot set headers, and the page
  gets the token from a ``<meta>`` tag only an authenticated page contains);
* everything else (no cookie) falls through to SigV4, unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.responses import RedirectResponse, Response

from squall.aws import errors as aws_errors
from squall.aws.sigv4 import AuthContext
from squall.core.errors import SquallError

__all__ = ["COOKIE", "CSRF_HEADER", "SessionGate", "Sessions"]

COOKIE = "squall_session"
CSRF_HEADER = "x-squall-csrf"
UI_PREFIX = "/ui"
API_PREFIX = "/_squall/api/"
#: paths of the UI that need no session (the login form and the assets it uses)
PUBLIC_UI = ("/ui/login", "/ui/static/")
DEFAULT_TTL_S = 12 * 3600.0
MAX_SESSIONS = 1000


class CsrfRejected(SquallError):
    code = "AccessDeniedException"
    status = 403
    fault = "user"


@dataclass
class _Session:
    access_key_id: str
    expires: float
    csrf: str


class Sessions:
    """Server-side session tokens.  Thread-safe."""

    def __init__(
        self,
        is_admin: Callable[[str], bool],
        secret_for: Callable[[str], str | None],
        ttl_s: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._is_admin = is_admin
        self._secret_for = secret_for
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, _Session] = {}

    def login(self, access_key_id: str, secret: str) -> str | None:
        """A new session token if the pair is the admin key, else None."""
        expected = self._secret_for(access_key_id) if self._is_admin(access_key_id) else None
        # compare even when the key is unknown, so the answer takes the same time either way
        ok = hmac.compare_digest(
            hashlib.sha256((expected or "\0").encode()).digest(), hashlib.sha256(secret.encode()).digest()
        )
        if expected is None or not ok:
            return None
        token = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._by_token = {t: s for t, s in self._by_token.items() if s.expires > now}
            if len(self._by_token) >= MAX_SESSIONS:  # drop the oldest
                oldest = min(self._by_token, key=lambda t: self._by_token[t].expires)
                del self._by_token[oldest]
            self._by_token[token] = _Session(access_key_id, now + self.ttl_s, secrets.token_urlsafe(24))
        return token

    def get(self, token: str | None) -> _Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is None:
                return None
            if session.expires <= self._clock() or not self._is_admin(session.access_key_id):
                del self._by_token[token]
                return None
            return session

    def csrf_token(self, token: str | None) -> str | None:
        session = self.get(token)
        return None if session is None else session.csrf

    def logout(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_token.pop(token, None)


def cookie_value(headers: Mapping[str, str], name: str = COOKIE) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class SessionGate:
    """``SigV4Middleware``'s ``session`` hook: an ``AuthContext`` for a valid session, a response (redirect or 403)
    to send instead, or None to carry on with SigV4."""

    def __init__(self, sessions: Sessions, region: str) -> None:
        self.sessions = sessions
        self.region = region

    def __call__(self, scope: MutableMapping[str, Any], headers: Mapping[str, str]) -> AuthContext | Response | None:
        path: str = scope["path"]
        is_ui = path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
        if not is_ui and not path.startswith(API_PREFIX):
            return None
        if "authorization" in headers or b"X-Amz-Signature" in scope.get("query_string", b""):
            return None  # signed: SigV4 decides
        token = cookie_value(headers)
        session = self.sessions.get(token)
        if session is None:
            if is_ui:
                target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
            return None
        method = scope["method"]
        if method not in ("GET", "HEAD") and not hmac.compare_digest(
            headers.get(CSRF_HEADER, "").encode(), session.csrf.encode()
        ):
            err = CsrfRejected(
                f"A dashboard session may {method} only with the {CSRF_HEADER} header the dashboard page sends."
            )
            status, h, body = aws_errors.render("lambda", err, scope.get("squall.request_id", ""))
            return Response(body, status, headers=h)
        scope["squall.session"] = token
        return AuthContext(
            access_key_id=session.access_key_id,
            region=self.region,
            service="lambda",
            signed_headers=(),
            body_check="unsigned",
        )
