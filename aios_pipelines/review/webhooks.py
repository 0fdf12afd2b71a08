"""Webhook deliveries: signed POSTs, retried with backoff, every outcome recorded.

Deliveries are written to the store's outbox (``webhook_deliveries``) in the same
transaction as the decision that causes them; :class:`WebhookDispatcher` sends them. Each
POST carries the JSON body and ``X-AIOS-Signature: sha256=<hex HMAC-SHA256 of the body
with the webhook's secret>``; receivers check it with :func:`verify_signature`.

A sender is any callable ``sender(url, body, headers) -> HTTP status``; it may raise on a
network error. The default one uses the standard library, so the service needs no extra
HTTP client at run time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import urllib.error
import urllib.request
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from aios_pipelines.review.store import ReviewStore

SIGNATURE_HEADER = "X-AIOS-Signature"
Sender = Callable[[str, bytes, Mapping[str, str]], int]

log = logging.getLogger(__name__)


def loggable_url(url: str) -> str:
    """The URL without credentials, query or fragment: receivers put keys there."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


def urllib_sender(url: str, body: bytes, headers: Mapping[str, str], *, timeout: float = 5.0) -> int:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only, checked at registration)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class WebhookDispatcher:
    """Sends outbox deliveries: ``attempts`` tries, waiting ``backoff * 2**i`` between them."""

    def __init__(self, store: ReviewStore, sender: Sender | None = None, *, attempts: int = 3,
                 backoff_seconds: float = 0.5, sleep: Callable[[float], None] = time.sleep):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.store = store
        self.sender = sender or urllib_sender
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.sleep = sleep

    def deliver(self, delivery_id: int) -> bool:
        """Try one delivery up to ``attempts`` times; record the outcome; True if delivered."""
        delivery = self.store.get_delivery(delivery_id)
        if delivery["delivered_at"] is not None or not delivery["active"]:
            return delivery["delivered_at"] is not None
        body = delivery["payload"].encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "aios-review-webhooks",
            "X-AIOS-Event": delivery["event"],
            "X-AIOS-Delivery": str(delivery_id),
            SIGNATURE_HEADER: sign(delivery["secret"], body),
        }
        status: int | None = None
        error: str | None = None
        tries = 0
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            tries += 1
            try:
                status = int(self.sender(delivery["url"], body, headers))
                error = None if 200 <= status < 300 else f"HTTP {status}"
            except Exception as exc:  # a receiver being down must not break a reviewer's request
                status, error = None, f"{type(exc).__name__}: {exc}"
            if error is None:
                break
            log.warning("webhook delivery %s to %s failed (try %s of %s): %s",
                        delivery_id, loggable_url(delivery["url"]), tries, self.attempts, error)
        delivered = error is None
        self.store.record_delivery(delivery_id, attempts=tries, last_status=status, last_error=error, delivered=delivered)
        return delivered

    def deliver_many(self, delivery_ids: Iterable[int]) -> dict[int, bool]:
        return {delivery_id: self.deliver(delivery_id) for delivery_id in delivery_ids}

    def deliver_pending(self, max_attempts: int = 9) -> dict[int, bool]:
        """Retry sweep: every undelivered delivery with fewer than ``max_attempts`` tries so far."""
        return self.deliver_many(self.store.pending_deliveries(max_attempts))
