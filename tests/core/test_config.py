"""Settings refuse insecure secrets outside development and honour HUIQI_ variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import DEV_SECRET_KEY, InsecureSettingsError, Settings


def test_production_with_default_secret_is_refused() -> None:
    with pytest.raises(InsecureSettingsError):
        Settings(env="production", secret_key=DEV_SECRET_KEY)


def test_production_with_short_secret_is_refused() -> None:
    with pytest.raises(InsecureSettingsError):
        Settings(env="production", secret_key="short-secret")


def test_development_refuses_the_published_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InsecureSettingsError):
        Settings(env="development", secret_key=DEV_SECRET_KEY, var_dir=tmp_path)


def test_only_tests_may_use_the_published_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert Settings(env="test", var_dir=tmp_path).secret_key == DEV_SECRET_KEY
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("env", ["development", "production"])
def test_unset_secret_is_generated_once_and_kept_private(tmp_path, env) -> None:  # type: ignore[no-untyped-def]
    first = Settings(env=env, var_dir=tmp_path / "var")
    path = tmp_path / "var" / "secret_key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first.secret_key) >= 32 and first.secret_key != DEV_SECRET_KEY
    assert Settings(env=env, var_dir=tmp_path / "var").secret_key == first.secret_key  # kept across starts
    assert Settings(env=env, var_dir=tmp_path / "other").secret_key != first.secret_key  # random per install


def test_token_forged_with_the_published_secret_is_refused_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A default (development) start must not accept an admin token signed with the published secret."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core import migrate, security
    from core.db import Database

    url = f"sqlite:///{tmp_path}/h.db"
    migrate.upgrade(url=url)
    settings = Settings(var_dir=tmp_path, database_url=url, warm_up=False, demo_users=False)
    database = Database(url)
    with database.session() as db:
        from tests import factories

        admin = factories.make_user(db, role="admin")
        db.commit()
        admin_id = admin.id
    published = Settings(env="test", secret_key=DEV_SECRET_KEY)
    forged = security.create_access_token(settings=published, subject=str(admin_id), claims={"role": "admin"})
    genuine = security.create_access_token(settings=settings, subject=str(admin_id))
    with TestClient(create_app(settings, database=database)) as client:
        assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
        assert client.get("/api/v1/users", headers={"Authorization": f"Bearer {genuine}"}).status_code == 200
    database.dispose()


def test_database_url_defaults_to_sqlite_under_var_dir(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(var_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/huiqi.db"


def test_settings_read_huiqi_prefixed_environment(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HUIQI_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("HUIQI_VAR_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == "sqlite:///x.db"
    assert settings.var_dir == tmp_path


def _documented(path: str) -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / path).read_text(encoding="utf-8")


def test_env_example_and_readme_list_every_setting() -> None:
    env_example, readme = _documented(".env.example"), _documented("README.md")
    for name in Settings.model_fields:
        var = f"HUIQI_{name.upper()}"
        assert var in env_example, f"{var} missing from .env.example"
        assert var in readme, f"{var} missing from README's configuration table"


@pytest.mark.parametrize("zone", ["", "Mars/Olympus", "Asia/Shanghai/"])
def test_unknown_time_zone_is_refused_naming_the_setting(zone: str) -> None:
    # It used to pass here and fail later, in a job, where `getattr(..., "Asia/Shanghai") or ...` hid it.
    with pytest.raises(ValueError, match="HUIQI_TIMEZONE"):
        Settings(_env_file=None, timezone=zone)


def test_settings_are_read_as_declared_fields_with_their_one_default() -> None:
    # No `getattr(settings, name, default)`: a second default drifts from the declared one.
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"getattr\(\s*[\w.]*settings\s*,")
    offenders = [
        f"{path.relative_to(root)}:{n}"
        for package in ("core", "auth", "catalog", "profiles", "matcher", "push", "desk", "web", "api")
        for path in sorted((root / package).rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []
