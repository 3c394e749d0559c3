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


def test_development_allows_default_secret() -> None:
    assert Settings(env="development").secret_key == DEV_SECRET_KEY


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
