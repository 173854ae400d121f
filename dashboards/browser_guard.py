"""What the service asks of browsers: no change made by another origin, no page framed, no script inlined.

An ASGI middleware in front of every route:

- **CSRF.** A request that may change something (any method but GET, HEAD, OPTIONS) and carries
  the session cookie must come from this origin: refused when the browser says it came from
  elsewhere (``Sec-Fetch-Site: same-site`` or ``cross-site``; ``same-site`` is Grafana on another port
  of this host, which SameSite cookies do not stop), when its ``Origin`` is another one, and when it
  lacks the session's ``X-CSRF-Token`` (``session.js`` adds it to the pages' own requests; the token
  is in ``GET /api/auth/status``, which another origin cannot read). Signing in and out need no
  token (there is no session yet, or it is ending) but the same origin checks. A request with a
  Bearer token is a machine's: the browser never adds one by itself, so it is not checked.
- **Headers** on every answer: a Content-Security-Policy (scripts and styles from this origin only,
  no inline script, no framing), ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: same-origin``. The API documentation pages (``/docs``, ``/redoc``) get a policy
  that also lets their renderers use inline styles and a worker, and nothing else does.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# No session yet (signing in) or one ending (signing out): origin checks only.
TOKENLESS_PATHS = frozenset({"/api/auth/login", "/api/auth/logout"})

# blob: for what the pages make themselves (the device list's CSV template and export links)
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
               "connect-src 'self' blob:; worker-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
               "frame-ancestors 'none'")
# Swagger UI and ReDoc (served from the project's own files) set styles inline and ReDoc runs a
# worker from a blob: URL. Still no inline script, no other origin, no framing.
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def csrf_refusal(method: str, path: str, headers: dict[str, str], session: str | None,
                 expected_token: Callable[[str], str]) -> str | None:
    """Why this request may not go on (Chinese, then English), or None. ``headers``: lower-cased names."""
    if method in SAFE_METHODS:
        return None
    if headers.get("authorization", "").lower().startswith("bearer "):
        return None  # a machine's token: a browser never sends one on a page's behalf
    site = headers.get("sec-fetch-site", "")
    if site in ("cross-site", "same-site"):
        return f"拒绝来自其他网页的请求（a {site} request may not change anything here）"
    origin = headers.get("origin")
    if origin is not None and not _same_origin(origin, headers.get("host", "")):
        return f"拒绝来自其他来源的请求（origin {origin[:100]} is not this service）"
    if session is None or path in TOKENLESS_PATHS:
        return None  # no session: the route answers 401 by itself
    sent = headers.get(CSRF_HEADER, "")
    if not sent or not hmac.compare_digest(sent.encode(), expected_token(session).encode()):
        return ("缺少或错误的防跨站令牌，请刷新页面（missing or wrong X-CSRF-Token: the pages send it; "
                "reload the page, or use a Bearer token from a script）")
    return None


def _same_origin(origin: str, host: str) -> bool:
    if origin == "null" or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


class BrowserGuard:
    """The middleware. ``expected_token``: the CSRF token of a session id; ``refused``: counts a refusal."""

    def __init__(self, app: ASGIApp, session_cookie: str, expected_token: Callable[[str], str],
                 refused: Callable[[str], None] = lambda _reason: None) -> None:
        self.app, self.session_cookie = app, session_cookie
        self.expected_token, self.refused = expected_token, refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:  # the first of a repeated header, as Request.headers.get gives it
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        refusal = csrf_refusal(scope["method"], path, headers, self._session(headers), self.expected_token)
        policy = (DOCS_POLICY if path in DOCS_PATHS or path.startswith("/docs/") or path.startswith("/redoc/")
                  else PAGE_POLICY).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _v in message.get("headers", [])}
                extra = [(k, v) for k, v in ((b"content-security-policy", policy), *SECURITY_HEADERS)
                         if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if refusal is not None:
            log.warning("request refused method=%s path=%s origin=%s site=%s: %s", scope["method"], path,
                        headers.get("origin", ""), headers.get("sec-fetch-site", ""), refusal)
            self.refused("csrf")
            body = json.dumps({"detail": refusal}, ensure_ascii=False).encode()
            await send_with_headers({"type": "http.response.start", "status": 403,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)

    def _session(self, headers: dict[str, str]) -> str | None:
        # The same parser as the routes' own (Request.cookies), so both see the same session.
        return cookie_parser(headers.get("cookie", "")).get(self.session_cookie) or None
