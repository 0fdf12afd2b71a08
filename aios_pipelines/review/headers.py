"""Security headers on every response of the review service: pages, the API, redirects,
errors (401, 404, 422...) and responses no route produced.

- ``Content-Security-Policy``: everything from this origin only, no inline script or
  style (the pages' CSS is ``/static/review.css``), forms post here, no framing.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``.
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
  ``Cross-Origin-Opener-Policy: same-origin``.
- ``Cache-Control: no-store`` on everything but the stylesheet: pages and API answers carry
  applicants' data and must not stay in a browser's or proxy's cache.
- ``Strict-Transport-Security`` only when the request came over HTTPS (uvicorn serving TLS
  itself, or a trusted proxy saying so): over plain HTTP a browser ignores it anyway.
"""

from __future__ import annotations

from typing import Any

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=31536000"
STATIC_PREFIX = "/static/"

BASE_HEADERS: dict[str, str] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def security_headers(path: str, scheme: str) -> dict[str, str]:
    """The headers a response to ``path`` requested over ``scheme`` gets (lower-case names)."""
    headers = dict(BASE_HEADERS)
    headers["cache-control"] = "public, max-age=3600" if path.startswith(STATIC_PREFIX) else "no-store"
    if scheme == "https":
        headers["strict-transport-security"] = HSTS
    return headers


class SecurityHeadersMiddleware:
    """ASGI middleware: sets :func:`security_headers` on every HTTP response, replacing any
    value a handler set for the same header."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(scope.get("path", ""), scope.get("scheme", "http"))
        encoded = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in wanted.items()]
        names = {name for name, _ in encoded}

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + encoded}
            await send(message)

        await self.app(scope, receive, send_with_headers)
