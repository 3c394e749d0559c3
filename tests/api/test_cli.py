"""The huiqi CLI against a real SQLite file chosen by HUIQI_DATABASE_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from api.cli import app
from core.config import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(tmp_path, monkeypatch) -> Iterator[str]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HUIQI_DATABASE_URL", url)
    monkeypatch.setenv("HUIQI_VAR_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_migrate_then_users_create_with_the_documented_flags(cli_env) -> None:  # type: ignore[no-untyped-def]
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(
        app, ["users", "create", "--role", "admin", "--username", "ops", "--password", "long-enough-1"]
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["users", "list"])
    assert "ops" in listed.output and "admin" in listed.output


def test_users_create_refuses_short_password_with_a_reason(cli_env) -> None:  # type: ignore[no-untyped-def]
    runner.invoke(app, ["migrate"])
    result = runner.invoke(app, ["users", "create", "--role", "admin", "--username", "ops", "--password", "short"])
    assert result.exit_code == 1
    assert "password" in result.output and "长度不足" in result.output


def test_users_create_refuses_a_duplicate_username(cli_env) -> None:  # type: ignore[no-untyped-def]
    runner.invoke(app, ["migrate"])
    args = ["users", "create", "--role", "curator", "--username", "dup", "--password", "long-enough-1"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "登录名已被使用" in result.output
