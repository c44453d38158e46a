"""The `luxfact` command, run in-process against the test database."""

import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from luxfact.cli.main import app
from tests.tenancy.test_config import GOOD

runner = CliRunner()


def invoke(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env)


@pytest.mark.parametrize("command", [
    [], ["serve"], ["db", "upgrade"], ["tenants", "sync"], ["users", "create"],
    ["apikeys", "create"], ["apikeys", "revoke"], ["demo"],
])
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def _slug() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def test_tenants_sync_is_idempotent_and_reports_changes(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    slug = _slug()
    (tmp_path / f"{slug}.toml").write_text(GOOD, encoding="utf-8")
    first = invoke(cli_env, "tenants", "sync", str(tmp_path))
    assert first.exit_code == 0, first.output
    assert f"{slug}: created" in first.output
    second = invoke(cli_env, "tenants", "sync", str(tmp_path))
    assert f"{slug}: unchanged" in second.output
    (tmp_path / f"{slug}.toml").write_text(GOOD.replace("Clinique Test", "Clinique Neuve"))
    third = invoke(cli_env, "tenants", "sync", str(tmp_path))
    assert f"{slug}: updated (legal_name)" in third.output


def test_one_bad_file_refuses_the_whole_sync(cli_env: dict[str, str], tmp_path: Path) -> None:
    good, bad = _slug(), _slug()
    (tmp_path / f"{good}.toml").write_text(GOOD, encoding="utf-8")
    (tmp_path / f"{bad}.toml").write_text(GOOD.replace('"90000017"', '"123"'), encoding="utf-8")
    result = invoke(cli_env, "tenants", "sync", str(tmp_path))
    assert result.exit_code == 1
    assert f"{bad}.toml: cns_provider_code:" in result.output
    assert "nothing was changed" in result.output
    # The good file was not applied either.
    users = invoke(cli_env, "users", "create", "--tenant", good, "--email", "a@b.lu",
                   "--role", "clerk")
    assert users.exit_code == 1 and "No tenant" in users.output


def test_users_and_keys_from_the_command_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    slug = _slug()
    (tmp_path / f"{slug}.toml").write_text(GOOD, encoding="utf-8")
    assert invoke(cli_env, "tenants", "sync", str(tmp_path)).exit_code == 0
    user = invoke(cli_env, "users", "create", "--tenant", slug, "--email", "desk@x.lu",
                  "--role", "clerk")
    assert user.exit_code == 0, user.output
    assert "password: " in user.output  # generated and shown once
    again = invoke(cli_env, "users", "create", "--tenant", slug, "--email", "desk@x.lu",
                   "--role", "clerk")
    assert again.exit_code == 1 and "already exists" in again.output
    bad_role = invoke(cli_env, "users", "create", "--tenant", slug, "--email", "z@x.lu",
                      "--role", "king")
    assert bad_role.exit_code == 2
    key = invoke(cli_env, "apikeys", "create", "--tenant", slug, "--role", "integration",
                 "--name", "HIS")
    assert key.exit_code == 0, key.output
    last = key.output.strip().splitlines()[-1]
    assert last.startswith("lfx_") and " " not in last
    key_id = key.output.split(": ")[1].split()[0]
    revoke = invoke(cli_env, "apikeys", "revoke", "--tenant", slug, key_id)
    assert revoke.exit_code == 0 and "revoked" in revoke.output


def test_unknown_tenant_is_a_clear_error(cli_env: dict[str, str]) -> None:
    result = invoke(cli_env, "apikeys", "create", "--tenant", "nowhere", "--role", "admin",
                    "--name", "x")
    assert result.exit_code == 1
    assert "No tenant 'nowhere'" in result.output


def test_demo_is_idempotent_and_shows_the_same_keys(cli_env: dict[str, str]) -> None:
    assert invoke(cli_env, "tenants", "sync").exit_code == 0  # the shipped demo tenants
    first = invoke(cli_env, "demo")
    second = invoke(cli_env, "demo")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    keys = [line.split()[-1] for line in first.output.splitlines() if "lfx_" in line]
    assert len(keys) == 8
    assert keys == [line.split()[-1] for line in second.output.splitlines() if "lfx_" in line]
    assert "clerk@demo-nord.lu" in first.output


def test_database_down_at_start_is_a_clear_failure() -> None:
    env = {"LUXFACT_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    serve = runner.invoke(app, ["serve"], env=env)
    assert serve.exit_code == 1
    assert "cannot reach the database" in serve.output
    upgrade = runner.invoke(app, ["db", "upgrade"], env=env)
    assert upgrade.exit_code == 1
    assert "cannot reach the database" in upgrade.output


def test_malformed_setting_stops_the_command() -> None:
    result = runner.invoke(app, ["demo"], env={"LUXFACT_PORT": "eighty"})
    assert result.exit_code == 2
    assert "LUXFACT_PORT" in result.output


def test_upgrade_says_the_revision_reached_not_the_one_asked(cli_env: dict[str, str]) -> None:
    from luxfact.db.migrate import head_revision

    head = head_revision()
    at_head = invoke(cli_env, "db", "upgrade")
    assert at_head.exit_code == 0 and f"database at revision {head}" in at_head.output
    older = invoke(cli_env, "db", "upgrade", "0001")
    assert older.exit_code == 0, older.output
    assert f"database at revision {head}" in older.output
    assert "never goes back" in older.output
    heads = invoke(cli_env, "db", "upgrade", "heads")  # a name for the head, not older
    assert heads.exit_code == 0 and "never goes back" not in heads.output


def test_a_database_not_migrated_is_named_not_mistaken_for_unreachable(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "empty.db"
    env = {"LUXFACT_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}
    (tmp_path / "hopital.toml").write_text(GOOD, encoding="utf-8")
    for command in (["tariffs", "price", "N101", "--date", "2024-01-01"],
                    ["tenants", "sync", str(tmp_path)],
                    ["users", "create", "--tenant", "hopital", "--email", "a@b.lu", "--role",
                     "clerk"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 1, (command, result.output)
        assert "revision none" in result.output and "luxfact db upgrade" in result.output
        assert "cannot reach" not in result.output
    with sqlite3.connect(path) as conn:  # nothing was written by the refused commands
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_facility_of_a_stored_hospital_is_not_taken_by_another_sync(
        cli_env: dict[str, str], tmp_path: Path) -> None:
    facility = f"HIS{uuid.uuid4().hex[:8].upper()}"
    owner, other = _slug(), _slug()
    mapped = GOOD + f'\n[integration]\nhl7_facilities = ["{facility}"]\n'
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / f"{owner}.toml").write_text(mapped, encoding="utf-8")
    assert invoke(cli_env, "tenants", "sync", str(first)).exit_code == 0
    # Another directory (another operator's files) claiming the same facility: refused.
    (second / f"{other}.toml").write_text(mapped, encoding="utf-8")
    taken = invoke(cli_env, "tenants", "sync", str(second))
    assert taken.exit_code == 1, taken.output
    assert f"{other}.toml: integration.hl7_facilities: {facility!r} is already mapped to " \
        f"tenant {owner!r}" in taken.output and "nothing was changed" in taken.output
    users = invoke(cli_env, "users", "create", "--tenant", other, "--email", "a@b.lu",
                   "--role", "clerk")
    assert users.exit_code == 1 and "No tenant" in users.output  # not created
    # Given up by its hospital first, the facility can move.
    (first / f"{owner}.toml").write_text(GOOD, encoding="utf-8")
    assert invoke(cli_env, "tenants", "sync", str(first)).exit_code == 0
    moved = invoke(cli_env, "tenants", "sync", str(second))
    assert moved.exit_code == 0 and f"{other}: created" in moved.output
