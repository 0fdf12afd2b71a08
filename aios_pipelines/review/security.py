"""Browser sessions and CSRF tokens for the review pages.

A session is a signed cookie (HMAC-SHA256 over a small JSON payload): the user's name, a
fingerprint of their token hash (issuing a new token ends old sessions), when it was
issued and a random nonce. The per-session CSRF token is an HMAC of that nonce, put in every
form as a hidden field and checked by every POST handler. Cookies are HttpOnly and
SameSite=Strict; the API uses bearer tokens instead and needs neither.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import Any

SESSION_COOKIE = "aios_session"
LOGIN_CSRF_COOKIE = "aios_login_csrf"
CSRF_FIELD = "csrf_token"
SESSION_MAX_AGE_SECONDS = 12 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def token_fingerprint(token_hash: str) -> str:
    return token_hash[:16]


class SessionSigner:
    def __init__(self, secret: bytes, *, max_age_seconds: int = SESSION_MAX_AGE_SECONDS):
        if len(secret) < 16:
            raise ValueError("the session secret must have at least 16 bytes")
        self._secret = secret
        self.max_age_seconds = max_age_seconds

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose.encode("ascii") + b"|" + data, hashlib.sha256).digest()

    def issue(self, user_name: str, token_hash: str, now: datetime) -> str:
        payload = json.dumps(
            {"u": user_name, "f": token_fingerprint(token_hash), "iat": int(now.timestamp()), "n": secrets.token_hex(16)},
            separators=(",", ":"), sort_keys=True,
        ).encode("utf-8")
        return _b64(payload) + "." + _b64(self._mac("session", payload))

    def read(self, cookie: str | None, now: datetime) -> dict[str, Any] | None:
        """The session payload of a valid, unexpired cookie; None otherwise."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, mac = cookie.split(".")
        try:
            payload = _unb64(body)
            given = _unb64(mac)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(given, self._mac("session", payload)):
            return None
        try:
            session = json.loads(payload)
        except ValueError:
            return None
        age = now.timestamp() - float(session.get("iat", 0))
        if age < -300 or age > self.max_age_seconds:
            return None
        return session

    def csrf_token(self, session: dict[str, Any]) -> str:
        return _b64(self._mac("csrf", str(session["n"]).encode("ascii")))

    def check_csrf(self, session: dict[str, Any], token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), str(token))
