"""`luxfact users ...` and `luxfact apikeys ...`."""

import secrets
import uuid

import typer

from luxfact.auth import service
from luxfact.auth.roles import Role
from luxfact.cli.common import as_tenant, console, owner_db, run, settings

users_app = typer.Typer(help="Users (people who log in).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (hospital systems).", no_args_is_help=True)


@users_app.command("create")
def create_user(
    tenant: str = typer.Option(..., help="Tenant slug."),
    email: str = typer.Option(...),
    role: Role = typer.Option(...),
    password: str | None = typer.Option(None, help="Default: a generated one, printed once."),
    name: str = typer.Option("", help="Display name."),
) -> None:
    """Create a user of one hospital."""
    config = settings()
    clear = password or secrets.token_urlsafe(12)

    async def _create() -> uuid.UUID:
        async with owner_db(config) as db, as_tenant(db, tenant) as (session, t):
            user = await service.create_user(session, t.id, email=email, role=role,
                                             password=clear, display_name=name)
            return user.id

    user_id = run(_create())
    console.print(f"user {email} ({role.value}) created in {tenant}: {user_id}")
    if password is None:
        console.print(f"password: {clear}")


@keys_app.command("create")
def create_key(
    tenant: str = typer.Option(..., help="Tenant slug."),
    role: Role = typer.Option(...),
    name: str = typer.Option(..., help="What the key is for, e.g. 'HIS interface'."),
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    config = settings()

    async def _create() -> tuple[uuid.UUID, str]:
        async with owner_db(config) as db, as_tenant(db, tenant) as (session, t):
            api_key, clear = await service.create_api_key(session, t.id, name=name, role=role,
                                                          created_by="cli")
            return api_key.id, clear

    key_id, clear = run(_create())
    console.print(f"API key {name!r} ({role.value}) created in {tenant}: {key_id}")
    print(clear)


@keys_app.command("revoke")
def revoke_key(
    tenant: str = typer.Option(..., help="Tenant slug."),
    key_id: uuid.UUID = typer.Argument(..., help="The key's id."),
) -> None:
    """Revoke an API key; it stops working at once."""
    config = settings()

    async def _revoke() -> None:
        async with owner_db(config) as db, as_tenant(db, tenant) as (session, t):
            await service.revoke_api_key(session, t.id, key_id)

    run(_revoke())
    console.print(f"API key {key_id} revoked")
