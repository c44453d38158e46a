"""Password hashing (argon2) and API key material.

An API key reads `lfx_<tenant uuid hex>_<43 url-safe characters>`: the tenant part lets the
service set the tenant before it looks the key up, so the lookup itself runs under row-level
security like every other query.
"""

import base64
import hashlib
import hmac
import re
import secrets
import uuid

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
_KEY = re.compile(r"^lfx_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$")
MIN_PASSWORD_LENGTH = 12


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.strip() != password or len(set(password)) < 5:
        raise ValueError("a password needs more variety (and no leading or trailing spaces)")


def new_api_key(tenant_id: uuid.UUID, secret: str | None = None) -> str:
    return f"lfx_{tenant_id.hex}_{secret or secrets.token_urlsafe(32)}"


def derived_secret(secret_key: str, label: str) -> str:
    """A stable 43-character secret (demo keys that survive a second `make run`)."""
    digest = hmac.new(secret_key.encode(), label.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def parse_api_key(key: str) -> tuple[uuid.UUID, str] | None:
    """The tenant a key claims and its secret; None for anything not shaped like a key."""
    match = _KEY.match(key)
    if not match:
        return None
    return uuid.UUID(hex=match.group(1)), match.group(2)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
