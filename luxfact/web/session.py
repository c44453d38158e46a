"""The desk's session: a signed cookie naming the user, their hospital and role.

Signed with HMAC-SHA256 under a key derived from LUXFACT_SECRET_KEY (never the key itself),
so it cannot be forged or altered; it holds no patient data. It expires after 30 minutes
without a request (each request renews it) and 12 hours after login whatever happens.
Logging out clears it; a copy taken before would live until one of those limits.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass

from luxfact.auth.credentials import derived_secret

COOKIE = "luxfact_session"
IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 60 * 60


@dataclass(frozen=True)
class WebSession:
    user_id: str
    tenant_id: str
    tenant_slug: str
    role: str
    name: str
    language: str
    csrf: str                 # the form token of this session
    issued: int               # login, seconds since the epoch
    seen: int                 # last request

    @property
    def tenant_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.tenant_id)

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}"

    def renewed(self, now: int | None = None) -> "WebSession":
        return WebSession(**{**asdict(self), "seen": now or int(time.time())})

    def with_language(self, language: str) -> "WebSession":
        return WebSession(**{**asdict(self), "language": language})


def new_session(*, user_id: uuid.UUID, tenant_id: uuid.UUID, tenant_slug: str, role: str,
                name: str, language: str) -> WebSession:
    now = int(time.time())
    return WebSession(user_id=str(user_id), tenant_id=str(tenant_id), tenant_slug=tenant_slug,
                      role=role, name=name, language=language,
                      csrf=secrets.token_urlsafe(32), issued=now, seen=now)


def _key(secret_key: str, purpose: str) -> bytes:
    return derived_secret(secret_key, purpose).encode()


def sign(secret_key: str, payload: dict, purpose: str = "desk-session") -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    mac = hmac.new(_key(secret_key, purpose), body, hashlib.sha256).digest()
    return (body + b"." + base64.urlsafe_b64encode(mac)).decode().replace("=", "")


def unsign(secret_key: str, token: str | None, purpose: str = "desk-session") -> dict | None:
    if not token or token.count(".") != 1 or len(token) > 8192:
        return None
    body, mac = (part + "=" * (-len(part) % 4) for part in token.split("."))
    try:
        expected = hmac.new(_key(secret_key, purpose), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, base64.urlsafe_b64decode(mac)):
            return None
        payload = json.loads(base64.urlsafe_b64decode(body))
    except (ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


def encode(secret_key: str, session: WebSession) -> str:
    return sign(secret_key, asdict(session))


def decode(secret_key: str, token: str | None, now: int | None = None) -> WebSession | None:
    """The session in the cookie, or None when absent, forged, idle or too old."""
    payload = unsign(secret_key, token)
    if payload is None:
        return None
    try:
        session = WebSession(**payload)
    except TypeError:
        return None
    now = now or int(time.time())
    if now - session.seen > IDLE_SECONDS or now - session.issued > ABSOLUTE_SECONDS:
        return None
    return session
