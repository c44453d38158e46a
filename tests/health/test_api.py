import httpx

from luxfact.app import create_app
from luxfact.settings import Settings


async def test_healthz_answers_without_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok" and body["migrations"] == "at head"


async def test_readyz_is_503_when_database_unreachable(settings: Settings) -> None:
    dead = settings.model_copy(update={"app_database_url": _dead_url(settings)})
    app = create_app(dead)
    from asgi_lifespan import LifespanManager

    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def _dead_url(settings: Settings) -> str:
    if settings.is_postgres:
        return "postgresql+asyncpg://nobody@127.0.0.1:1/none"
    return "sqlite+aiosqlite:////nonexistent-dir/luxfact.db"
