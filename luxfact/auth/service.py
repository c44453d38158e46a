"""Use cases of users and keys. Never commits: the caller's unit of work does."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from luxfact.audit.service import record
from luxfact.auth import credentials
from luxfact.auth.key_cache import RecentKeys, announce_change
from luxfact.auth.models import ApiKey, User
from luxfact.auth.repository import AuthRepository
from luxfact.auth.roles import Role
from luxfact.kit.errors import Conflict, NotFound, ValidationFailed
from luxfact.kit.time import utcnow

# Writing last_used_at on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user or an API key, of one tenant, with one role."""

    tenant_id: uuid.UUID
    kind: str  # "user" or "key"
    id: uuid.UUID
    role: Role
    name: str

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


# Keys found valid lately, in this worker (see key_cache for what that costs revocation).
recent_keys: RecentKeys[Principal] = RecentKeys()


async def announce_key_change(session: AsyncSession) -> None:
    """This transaction revokes or deletes keys: no worker may go on accepting them."""
    await announce_change(session, recent_keys)


async def authenticate_key(
    session: AsyncSession, tenant_id: uuid.UUID, key: str
) -> Principal | None:
    """The key's principal, or None. The tenant must already be set on the transaction.

    A key found valid in the last few seconds is not looked up again (`key_cache`); its
    last-used time, kept to the minute, is written by the look-ups in between."""
    key_hash = credentials.hash_api_key(key)
    principal = recent_keys.get(tenant_id, key_hash)
    if principal is not None:
        return principal
    generation = recent_keys.generation
    repo = AuthRepository(session, tenant_id)
    found = await repo.active_key_row(key_hash)
    if found is None:
        return None
    now = utcnow()
    stale_before = now - LAST_USED_RESOLUTION
    if found.last_used_at is None or found.last_used_at < stale_before:
        await repo.touch_key(found.id, now, stale_before)
    principal = Principal(tenant_id, "key", found.id, Role(found.role), found.name)
    recent_keys.put(tenant_id, key_hash, principal, generation)
    return principal


async def create_user(
    session: AsyncSession, tenant_id: uuid.UUID, *, email: str, role: Role, password: str,
    display_name: str = "", language: str = "fr",
) -> User:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ValidationFailed(errors=[{"field": "email", "reason": "not an e-mail address"}])
    try:
        credentials.check_password_policy(password)
    except ValueError as exc:
        raise ValidationFailed(errors=[{"field": "password", "reason": str(exc)}]) from None
    repo = AuthRepository(session, tenant_id)
    if await repo.user_by_email(email):
        raise Conflict(f"A user with e-mail {email} already exists in this hospital.")
    user = User(tenant_id=tenant_id, email=email, role=role.value, display_name=display_name,
                password_hash=credentials.hash_password(password), language=language)
    session.add(user)
    await record(session, "user.create", "user", user.id, {"role": role.value},
                 tenant_id=tenant_id)
    return user


async def create_api_key(
    session: AsyncSession, tenant_id: uuid.UUID, *, name: str, role: Role,
    created_by: str | None = None, secret: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the clear key is returned once and never stored."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed(errors=[{"field": "name", "reason": "1 to 100 characters"}])
    clear = credentials.new_api_key(tenant_id, secret)
    api_key = ApiKey(tenant_id=tenant_id, name=name, role=role.value,
                     key_hash=credentials.hash_api_key(clear), prefix=clear[37:45],
                     created_by=created_by)
    session.add(api_key)
    await record(session, "apikey.create", "api_key", api_key.id,
                 {"role": role.value, "name": name}, tenant_id=tenant_id)
    return api_key, clear


async def revoke_api_key(session: AsyncSession, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    api_key = await AuthRepository(session, tenant_id).key(key_id)
    if api_key is None:
        raise NotFound("No such API key.")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        session.add(api_key)
        await announce_key_change(session)
        await record(session, "apikey.revoke", "api_key", api_key.id, {}, tenant_id=tenant_id)
    return api_key
