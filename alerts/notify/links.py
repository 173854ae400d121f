"""The answer link in an SMS or a chat message: one person, one incident, expiring, signed.

A token is ``{incident}.{person}.{expires}.{signature}`` in URL-safe base64 pieces, where the
signature is HMAC-SHA256 under the link secret (``WANLI_NOTIFY_LINK_SECRET``) of the other three,
cut to 16 bytes: short enough for an SMS, far too long to guess. Whoever holds the link may
answer for that person on that incident until it expires, and for nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from foundation.errors import Invalid


@dataclass(frozen=True, slots=True)
class AnswerGrant:
    incident_id: str
    person: str
    expires_ms: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, body: str) -> str:
    return _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:16])


def sign_answer_token(secret: str, incident_id: str, person: str, expires_ms: int) -> str:
    body = f"{_b64(incident_id.encode())}.{_b64(person.encode())}.{expires_ms // 1000:x}"
    return f"{body}.{_mac(secret, body)}"


def verify_answer_token(secret: str, token: str, now_ms: int) -> AnswerGrant:
    """The grant a token carries; Invalid when it is malformed, forged or expired."""
    parts = token.split(".")
    if len(parts) != 4 or len(token) > 600:
        raise Invalid("应答链接无效（malformed answer link）")
    body = ".".join(parts[:3])
    if not hmac.compare_digest(_mac(secret, body), parts[3]):
        raise Invalid("应答链接无效（answer link signature does not match）")
    try:
        incident_id, person = _unb64(parts[0]).decode(), _unb64(parts[1]).decode()
        expires_ms = int(parts[2], 16) * 1000
    except ValueError:
        raise Invalid("应答链接无效（malformed answer link）") from None
    if now_ms >= expires_ms:
        raise Invalid("应答链接已过期（answer link expired）")
    return AnswerGrant(incident_id, person, expires_ms)
