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


def test_intake_creates_drafts_and_explains_a_refused_file(cli_env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from catalog import service as catalog_service
    from catalog.schemas import DepartmentIn
    from core.db import Database
    from tests.support import intake_docs as docs

    assert runner.invoke(app, ["migrate"]).exit_code == 0
    database = Database(cli_env)
    with database.sessionmaker() as db:
        catalog_service.create_department(
            db=db,
            department_in=DepartmentIn(
                code="zs-gxj", name="中山市工业和信息化局", short_name="中山工信", region_code="442000"
            ),
        )
        db.commit()
    database.dispose()
    notice = tmp_path / "notice.docx"
    notice.write_bytes(docs.docx_bytes())
    result = runner.invoke(app, ["intake", str(notice), "--json"])
    assert result.exit_code == 0, result.output
    drafts = json.loads(result.output)
    assert drafts[0]["status"] == "draft" and drafts[0]["fields"]["title"]["value"].endswith("的通知")
    table = runner.invoke(app, ["intake", str(notice)])
    assert table.exit_code == 0 and "可能重复" in table.output
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(docs.scanned_pdf_bytes())
    refused = runner.invoke(app, ["intake", str(scan)])
    assert refused.exit_code != 0 and "file.no_text_layer" in refused.output
