"""FAISS vector indexes keyed by database id: updates, files, and the exact/approximate choice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

from matcher import index as index_mod
from matcher.index import (
    VectorIndex,
    build_approximate,
    build_exact,
    choose_index,
    manifest_path,
    recall_at_k,
)

MODEL = "test/model@1"
DIM = 32


def unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def random_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, dim)))


def clustered_vectors(n: int, dim: int = DIM, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """Points around well-separated centres, as real embeddings of topical texts tend to be."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    labels = rng.integers(0, clusters, n)
    return unit(centres[labels] + 0.15 * rng.standard_normal((n, dim)))


@pytest.fixture
def small() -> tuple[np.ndarray, np.ndarray, VectorIndex]:
    ids = np.arange(1000, 1200, dtype=np.int64)
    vectors = random_vectors(200)
    return ids, vectors, build_exact(ids, vectors, model_id=MODEL)


def test_search_returns_database_ids_best_first(small) -> None:
    ids, vectors, index = small
    scores, found = index.search(vectors[[3, 7]], k=5)
    assert found.shape == (2, 5) and scores.shape == (2, 5)
    assert found[:, 0].tolist() == [ids[3], ids[7]]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    assert len(index) == 200


def test_search_accepts_one_vector_and_normalises_it(small) -> None:
    ids, vectors, index = small
    scores, found = index.search(vectors[5] * 7.0, k=1)
    assert found[0, 0] == ids[5] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_search_pads_with_minus_one_when_k_exceeds_the_count() -> None:
    index = build_exact([1, 2], random_vectors(2), model_id=MODEL)
    _, found = index.search(random_vectors(1, seed=3), k=4)
    assert sorted(found[0, :2].tolist()) == [1, 2] and found[0, 2:].tolist() == [-1, -1]


def test_add_or_update_replaces_the_vector_of_an_existing_id(small) -> None:
    ids, vectors, index = small
    index.add_or_update([ids[0]], vectors[[50]])
    assert len(index) == 200
    _, found = index.search(vectors[[50]], k=2)
    assert set(found[0].tolist()) == {ids[0], ids[50]}
    _, found = index.search(vectors[[0]], k=1)
    assert found[0, 0] != ids[0]


def test_add_or_update_adds_new_ids(small) -> None:
    _, _, index = small
    new = random_vectors(1, seed=9)
    index.add_or_update([5], new)
    assert len(index) == 201 and index.search(new, 1)[1][0, 0] == 5


def test_remove_deletes_by_id_and_counts_only_held_ids(small) -> None:
    ids, vectors, index = small
    assert index.remove([ids[1], ids[2], 999_999]) == 2
    assert len(index) == 198
    assert ids[1] not in index.search(vectors[[1]], k=10)[1]
    assert index.remove([]) == 0


def test_add_or_update_rejects_duplicate_ids_wrong_shapes_and_negative_ids(small) -> None:
    _, vectors, index = small
    with pytest.raises(ValueError, match="unique"):
        index.add_or_update([1, 1], vectors[:2])
    with pytest.raises(ValueError, match="shape"):
        index.add_or_update([1], random_vectors(1, dim=DIM + 1))
    with pytest.raises(ValueError, match="shape"):
        index.add_or_update([1, 2], vectors[:1])
    with pytest.raises(ValueError, match="non-negative"):
        index.add_or_update([-1], vectors[:1])


def test_ids_lists_the_database_ids_held(small) -> None:
    ids, _, index = small
    index.remove([ids[0]])
    assert sorted(index.ids().tolist()) == sorted(ids[1:].tolist())


def test_search_uses_one_faiss_thread_for_few_queries_and_two_for_bulk(small, monkeypatch) -> None:
    _, _, index = small
    before = faiss.omp_get_max_threads()
    calls: list[int] = []
    real = faiss.omp_set_num_threads

    def spy(n: int) -> None:
        calls.append(n)
        real(n)

    monkeypatch.setattr(faiss, "omp_set_num_threads", spy)
    index.search(random_vectors(1), k=3)
    index.search(random_vectors(1024), k=3)
    assert calls == [1, before, 2, before]
    assert faiss.omp_get_max_threads() == before


# --- files ---------------------------------------------------------------------------------------


def test_save_and_load_round_trip_keeps_ids_and_results(small, tmp_path: Path) -> None:
    ids, vectors, index = small
    path = tmp_path / "policies.faiss"
    manifest = index.save(path)
    loaded = VectorIndex.load(path, MODEL, DIM)
    assert loaded is not None and len(loaded) == 200 and loaded.kind == "flat"
    np.testing.assert_array_equal(loaded.search(vectors[:5], 3)[1], index.search(vectors[:5], 3)[1])
    on_disk = json.loads(manifest_path(path).read_text(encoding="utf-8"))
    assert on_disk == manifest
    assert on_disk["model_id"] == MODEL and on_disk["dim"] == DIM and on_disk["count"] == 200
    assert on_disk["kind"] == "flat" and len(on_disk["sha256"]) == 64 and on_disk["created_at"]
    loaded.add_or_update([ids[0]], vectors[[9]])  # a loaded index stays updatable
    assert len(loaded) == 200


def test_save_leaves_no_temporary_files(small, tmp_path: Path) -> None:
    small[2].save(tmp_path / "i.faiss")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.faiss", "i.faiss.manifest.json"]


def test_load_returns_none_for_another_model_and_logs_why(small, tmp_path: Path, caplog) -> None:
    small[2].save(tmp_path / "i.faiss")
    with caplog.at_level(logging.WARNING, logger="matcher.index"):
        assert VectorIndex.load(tmp_path / "i.faiss", "other/model@2", DIM) is None
    assert "other/model@2" in caplog.text


def test_load_returns_none_for_another_dimension(small, tmp_path: Path) -> None:
    small[2].save(tmp_path / "i.faiss")
    assert VectorIndex.load(tmp_path / "i.faiss", MODEL, DIM * 2) is None


def test_load_returns_none_for_a_corrupted_index_file(small, tmp_path: Path, caplog) -> None:
    path = tmp_path / "i.faiss"
    small[2].save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="matcher.index"):
        assert VectorIndex.load(path, MODEL, DIM) is None
    assert "checksum" in caplog.text


def test_load_returns_none_for_a_truncated_file_with_a_matching_manifest(small, tmp_path: Path) -> None:
    path = tmp_path / "i.faiss"
    small[2].save(path)
    data = path.read_bytes()[:100]
    path.write_bytes(data)
    manifest = json.loads(manifest_path(path).read_text())
    manifest["sha256"] = index_mod._sha256(data)  # checksum agrees, FAISS itself must refuse the bytes
    manifest_path(path).write_text(json.dumps(manifest))
    assert VectorIndex.load(path, MODEL, DIM) is None


@pytest.mark.parametrize("damage", ["missing_file", "missing_manifest", "garbage_manifest", "list_manifest"])
def test_load_returns_none_when_a_file_is_missing_or_unreadable(small, tmp_path: Path, damage: str) -> None:
    path = tmp_path / "i.faiss"
    small[2].save(path)
    if damage == "missing_file":
        path.unlink()
    elif damage == "missing_manifest":
        manifest_path(path).unlink()
    elif damage == "garbage_manifest":
        manifest_path(path).write_text("{not json")
    else:
        manifest_path(path).write_text("[]")
    assert VectorIndex.load(path, MODEL, DIM) is None


# --- approximate -----------------------------------------------------------------------------------


def test_recall_of_an_index_against_itself_is_one(small) -> None:
    _, vectors, index = small
    assert recall_at_k(index, index, vectors[:20], k=10) == 1.0


def test_ivf_index_updates_and_removes_by_id_and_round_trips_its_nprobe(tmp_path: Path) -> None:
    vectors = clustered_vectors(2000)
    ids = np.arange(2000) + 10
    ivf = build_approximate(ids, vectors, model_id=MODEL, kind="ivf", nprobe=8)
    assert ivf.kind == "ivf" and len(ivf) == 2000
    new = random_vectors(1, seed=42)
    ivf.add_or_update([10], new)
    assert len(ivf) == 2000 and ivf.search(new, 1)[1][0, 0] == 10
    assert ivf.remove([11, 12]) == 2 and len(ivf) == 1998
    assert sorted(ivf.ids().tolist()) == sorted([10, *range(13, 2010)])
    ivf.save(tmp_path / "ivf.faiss")
    loaded = VectorIndex.load(tmp_path / "ivf.faiss", MODEL, DIM)
    assert loaded is not None and loaded.kind == "ivf" and loaded.faiss_index.nprobe == 8


def test_hnsw_index_accepts_new_ids_but_refuses_replacing_or_removing() -> None:
    vectors = clustered_vectors(500)
    hnsw = build_approximate(np.arange(500), vectors, model_id=MODEL, kind="hnsw")
    hnsw.add_or_update([1000], random_vectors(1, seed=5))
    assert len(hnsw) == 501 and not hnsw.supports_removal
    with pytest.raises(NotImplementedError, match="rebuild"):
        hnsw.add_or_update([3], random_vectors(1, seed=6))
    with pytest.raises(NotImplementedError, match="rebuild"):
        hnsw.remove([3])


def test_choose_index_stays_exact_below_the_threshold() -> None:
    vectors = clustered_vectors(300)
    index, report = choose_index(np.arange(300), vectors, model_id=MODEL, approx_threshold=1000)
    assert index.kind == "flat" and len(index) == 300
    assert report["decision"] == "exact_below_threshold" and report["recall"] is None


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_choose_index_keeps_an_approximate_index_that_reaches_recall_099(kind: str) -> None:
    vectors = clustered_vectors(5000)
    queries = clustered_vectors(100, seed=1)  # other points of the same clusters, like live queries
    index, report = choose_index(
        np.arange(5000), vectors, model_id=MODEL, approx_threshold=1000, sample_queries=queries, kind=kind
    )
    assert report["decision"] == "approx_kept" and index.kind == kind
    assert report["recall"] >= 0.99
    exact = build_exact(np.arange(5000), vectors, model_id=MODEL)
    assert recall_at_k(exact, index, queries, k=10) >= 0.99  # the report tells the truth


def test_choose_index_rejects_an_approximate_index_below_recall_099_and_serves_exact() -> None:
    vectors = random_vectors(4000, dim=64)  # uniform points: the hardest case for IVF
    index, report = choose_index(np.arange(4000), vectors, model_id=MODEL, approx_threshold=1000, search_values=[1])
    assert report["decision"] == "approx_rejected" and report["recall"] < 0.99
    assert index.kind == "flat" and len(index) == 4000
    assert report["tried"] == [{"value": 1, "recall": report["recall"]}]


def test_choose_index_does_not_count_probing_half_the_lists_as_approximate() -> None:
    vectors = random_vectors(4000, dim=64)
    _, report = choose_index(np.arange(4000), vectors, model_id=MODEL, approx_threshold=1000, nlist=16)
    assert all(t["value"] <= 8 for t in report["tried"])
