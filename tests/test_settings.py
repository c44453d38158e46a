import pytest

from luxfact.settings import SettingsError, load_settings


def test_defaults_are_the_embedded_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUXFACT_DATABASE_URL", raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.database_url.endswith("var/luxfact.db")
    assert settings.effective_app_database_url == settings.database_url


def test_postgres_url_gets_the_async_driver_and_the_app_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LUXFACT_DATABASE_URL", "postgresql://owner:pw@db:5432/luxfact")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://owner:pw@db:5432/luxfact"
    assert settings.effective_app_database_url == "postgresql+asyncpg://luxfact_app@db:5432/luxfact"


@pytest.mark.parametrize(("name", "value"), [
    ("LUXFACT_DATABASE_URL", "mysql://x@y/z"),
    ("LUXFACT_DATABASE_URL", "::not a url::"),
    ("LUXFACT_PORT", "eighty"),
    ("LUXFACT_MAX_BODY_BYTES", "-1"),
    ("LUXFACT_LOG_LEVEL", "LOUD"),
    ("LUXFACT_SECRET_KEY", "short"),
    ("LUXFACT_TENANT_SETTING_MODE", "magic"),
])
def test_malformed_setting_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()
