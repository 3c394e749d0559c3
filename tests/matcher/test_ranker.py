"""`huiqi train ranker`: the learned ranking from logged feedback, its held-out comparison with the hand
weights, the manifest and skops files, and the recommendations it reorders when (and only when) it wins.

Feedback is synthetic but honest: components are drawn like the ranking's (rules 1 / 0.5–0.8 / 0.7,
tags and semantic in [0, 1], urgency mostly 0), and each firm's answer is drawn from a hidden rule
in which shared tags matter far more than the hand weights say (0.15) and semantic similarity far
less (0.55), with a per-firm leaning. The learner never sees the rule, only the logged rows.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sqlalchemy import delete, insert
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from api.cli import app as cli_app
from catalog import service as catalog_service
from core.config import get_settings
from core.db import utcnow
from matcher import calculator, feedback, ranker, recommend, store
from matcher.models import Feedback
from matcher.ranking import Components, Weights
from tests import factories

HIDDEN = {"bias": -3.0, "rules": 1.0, "tags": 5.0, "semantic": 0.5, "urgency": 1.5}
N_FIRMS, N_POLICIES = 40, 8  # 320 (firm, policy) pairs, above the default threshold of 200


def draw_components(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return n rows of (rules, tags, semantic, urgency) distributed like the ranking's components."""
    rules = rng.choice([1.0, 0.5, 0.6, 0.7, 0.8], size=n, p=[0.5, 0.15, 0.15, 0.1, 0.1])
    tags = np.round(rng.beta(1.2, 2.5, n), 4)
    semantic = np.round(np.clip(rng.normal(0.5, 0.25, n), 0, 1), 4)
    urgency = np.where(rng.random(n) < 0.3, np.round(rng.random(n), 4), 0.0)
    return np.c_[rules, tags, semantic, urgency]


def draw_labels(rng: np.random.Generator, x: np.ndarray, groups: np.ndarray, *, noise: bool) -> np.ndarray:
    """Return 1 (interested/applied) or 0 (not relevant): from the hidden rule, or coin flips when noise."""
    if noise:
        return (rng.random(len(x)) < 0.4).astype(int)
    leaning = rng.normal(0, 0.5, groups.max() + 1)[groups]
    z = HIDDEN["bias"] + x @ np.array([HIDDEN[f] for f in ranker.FEATURES]) + leaning
    return (rng.random(len(x)) < 1 / (1 + np.exp(-z))).astype(int)


def synthetic(seed: int, *, noise: bool = False, n_firms: int = N_FIRMS, per_firm: int = N_POLICIES):
    """Return (x, y, firm index per row) for n_firms × per_firm pairs."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_firms), per_firm)
    x = draw_components(rng, len(groups))
    return x, draw_labels(rng, x, groups, noise=noise), groups


def make_world(db: Session, n_firms: int = N_FIRMS, n_policies: int = N_POLICIES) -> tuple[list[int], list[int]]:
    """Create firms and published policies the feedback can point at."""
    firms = [factories.make_enterprise(db).id for _ in range(n_firms)]
    policies = [factories.make_policy(db, publish=True).id for _ in range(n_policies)]
    return firms, policies


def log_feedback(
    db: Session, firms: list[int], policies: list[int], *, seed: int, noise: bool = False, superseded: float = 0.2
) -> dict[tuple[int, int], int]:
    """Log one answer per (firm, policy) drawn from the hidden rule, some after an earlier opposite answer.

    Returns the label of each pair's latest answer.
    """
    x, y, groups = synthetic(seed, noise=noise, n_firms=len(firms), per_firm=len(policies))
    rng = np.random.default_rng(seed + 1000)
    start = utcnow() - dt.timedelta(days=30)
    rows: list[dict[str, Any]] = []
    labels = {}
    for k, (features, label) in enumerate(zip(x, y, strict=True)):
        pair = (firms[groups[k]], policies[k % len(policies)])
        components = {"status": "eligible", **dict(zip(ranker.FEATURES, map(float, features), strict=True))}
        components["score"] = round(float(Weights().rules * features[0] + Weights().semantic * features[2]), 4)
        if rng.random() < superseded:  # an earlier word the firm later took back
            rows.append(
                _row(pair, "applied" if label == 0 else "not_relevant", components, start + dt.timedelta(seconds=k))
            )
        action = ("interested", "applied")[k % 2] if label else "not_relevant"
        rows.append(_row(pair, action, components, start + dt.timedelta(days=1, seconds=k)))
        labels[pair] = int(label)
    db.execute(insert(Feedback), rows)
    db.flush()
    return labels


def _row(pair: tuple[int, int], action: str, components: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    return {
        "enterprise_id": pair[0],
        "policy_id": pair[1],
        "action": action,
        "components": components,
        "created_at": at,
    }


def _manifest(models_dir: Path) -> dict[str, Any]:
    return json.loads((models_dir / "ranker" / "manifest.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- dataset


def test_dataset_takes_the_latest_word_per_firm_and_policy(db: Session) -> None:
    firms, policies = make_world(db, n_firms=2, n_policies=3)
    a, b = firms
    p1, p2, p3 = policies
    t0 = utcnow() - dt.timedelta(hours=1)
    comp = {"status": "eligible", "rules": 1.0, "tags": 0.5, "semantic": 0.25, "score": 0.5, "similarity": 0.9}
    db.execute(
        insert(Feedback),
        [
            _row((a, p1), "interested", comp, t0),
            _row((a, p1), "not_relevant", comp, t0 + dt.timedelta(minutes=5)),  # the latest word counts: 0
            _row((a, p2), "applied", {**comp, "urgency": 0.75}, t0),
            _row((b, p1), "not_relevant", {}, t0),  # no stored result when the firm answered: unusable
            _row((b, p2), "interested", comp, t0),
            _row((b, p3), "not_relevant", {"rules": 0.5, "tags": True, "semantic": 0.1}, t0),  # a bool is no score
        ],
    )
    data = ranker.build_dataset(db=db)
    assert data.pairs == sorted([(a, p1), (a, p2), (b, p2)])
    by_pair = dict(zip(data.pairs, data.y.tolist(), strict=True))
    assert by_pair == {(a, p1): 0, (a, p2): 1, (b, p2): 1}
    assert data.features == ["rules", "tags", "semantic", "urgency"]
    assert data.x[data.pairs.index((a, p2))].tolist() == [1.0, 0.5, 0.25, 0.75]
    assert data.filled == {"rules": 0, "tags": 0, "semantic": 0, "urgency": 2}  # logged without urgency: 0
    assert data.skipped == {"other_action": 0, "no_components": 2}
    assert data.ignored_keys == ["similarity"]  # not a component the ranking computes per candidate
    assert data.groups.tolist() == [p[0] for p in data.pairs]


def test_feedback_records_the_urgency_the_firm_saw(db: Session) -> None:
    today = dt.date.today()
    policy = factories.make_policy(db, publish=True, apply_end_on=today + dt.timedelta(days=7))
    firm = factories.make_enterprise(db)
    row_ = store.Row(firm.id, 1, firm.profile_updated_at, 1, 0, b"")
    row_.payload = store.encode(_store_result(policy, rules=1.0, tags=0.2, semantic=0.4), np.zeros(0, store.NEAR))
    store.write(db, [row_])
    row = feedback.record_feedback(db=db, enterprise_id=firm.id, policy_id=policy.id, action="interested", today=today)
    assert row.components["urgency"] == 1.0  # within a week
    later = feedback.record_feedback(
        db=db, enterprise_id=firm.id, policy_id=policy.id, action="applied", today=today - dt.timedelta(days=12)
    )
    assert 0 < later.components["urgency"] < 1
    assert ranker.build_dataset(db=db).x.tolist() == [[1.0, 0.2, 0.4, later.components["urgency"]]]


# ---------------------------------------------------------------- evaluation (no database)


def test_held_out_folds_are_grouped_by_firm_stratified_and_cover_every_row() -> None:
    _, y, groups = synthetic(3)
    folds = ranker.holdout_folds(y, groups, seed=0)
    assert folds is not None and len(folds) == 4
    covered = np.concatenate([test for _, test in folds])
    assert sorted(covered.tolist()) == list(range(len(y)))
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert 0.15 < len(test) / len(y) < 0.35
        assert abs(y[test].mean() - y.mean()) < 0.1
    again = ranker.holdout_folds(y, groups, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))  # deterministic


def test_bootstrap_auc_agrees_with_sklearn_on_ties_and_multiplicities() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200), 1)  # many ties
    counts = rng.integers(0, 3, 200)
    repeated = np.repeat(np.arange(200), counts)
    got = ranker._weighted_aucs(y, scores, np.vstack([np.ones(200), counts]).astype(float))
    assert got[0] == pytest.approx(roc_auc_score(y, scores))
    assert got[1] == pytest.approx(roc_auc_score(y[repeated], scores[repeated]))


def test_hidden_rule_beats_the_hand_weights_on_held_out_firms() -> None:
    for seed in range(5):
        x, y, groups = synthetic(seed)
        ev = ranker.evaluate(x, y, groups, ranker.FEATURES, Weights(), seed=0)
        assert ev.auc_model > ev.auc_hand + 0.05, (seed, ev)
        assert ranker.decide(ev, len(y), 200)[0], (seed, ev)


def test_pure_noise_is_never_used_even_when_it_happens_to_beat_the_hand_weights() -> None:
    lucky = 0
    for seed in range(12):
        x, y, groups = synthetic(seed, noise=True)
        ev = ranker.evaluate(x, y, groups, ranker.FEATURES, Weights(), seed=0)
        used, reason = ranker.decide(ev, len(y), 200)
        assert not used, (seed, ev, reason)
        lucky += ev.auc_model > ev.auc_hand
    # Several noise fits score above the hand blend by chance; the interval, not the bare comparison, refuses them.
    assert lucky >= 3


# ---------------------------------------------------------------- training, manifest, loading


@pytest.fixture
def hidden_rule_feedback(db: Session) -> dict[tuple[int, int], int]:
    firms, policies = make_world(db)
    return log_feedback(db, firms, policies, seed=1)


def test_learned_ranker_wins_is_used_and_round_trips(db: Session, hidden_rule_feedback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    assert manifest["n_samples"] == len(hidden_rule_feedback) == N_FIRMS * N_POLICIES
    assert manifest["n_pos"] == sum(hidden_rule_feedback.values())
    assert manifest["n_neg"] == manifest["n_samples"] - manifest["n_pos"]
    assert manifest["features"] == ["rules", "tags", "semantic", "urgency"]
    assert manifest["auc_model"] > manifest["auc_hand"] + 0.05
    assert manifest["auc_gain_interval"][0] > 0
    assert manifest["used"] is True and "已启用" in manifest["reason"]
    coef = manifest["coefficients"]
    assert coef["tags"] > 2 * coef["semantic"] and coef["tags"] > coef["rules"]  # it found what matters
    assert _manifest(tmp_path) == manifest  # what is on disk is what was returned
    dt.datetime.fromisoformat(manifest["trained_at"])

    learned = ranker.load(tmp_path)
    assert learned is not None and learned.features == tuple(manifest["features"])
    assert dict(zip(learned.features, learned.coef.round(6).tolist(), strict=True)) == coef
    model = sio.load(
        tmp_path / "ranker" / "model.skops", trusted=sio.get_untrusted_types(file=tmp_path / "ranker" / "model.skops")
    )["model"]
    x = draw_components(np.random.default_rng(9), 50)
    assert learned.probabilities(x) == pytest.approx(model.predict_proba(x)[:, 1])


def test_loader_refuses_tampered_or_unused_models(db: Session, hidden_rule_feedback, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    rankers = ranker.RankerCache()
    first = rankers.active(tmp_path)
    assert first is not None and rankers.active(tmp_path) is first  # cached while the files stay the same

    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "ranker", broken / "ranker")
    (broken / "ranker" / "model.skops").write_bytes((broken / "ranker" / "model.skops").read_bytes() + b"x")
    assert ranker.load(broken) is None  # checksum

    unused = tmp_path / "unused"
    shutil.copytree(tmp_path / "ranker", unused / "ranker")
    path = unused / "ranker" / "manifest.json"
    path.write_text(json.dumps({**_manifest(unused), "used": False}), encoding="utf-8")
    assert ranker.load(unused) is None

    # Retraining on noise rewrites the files; the cache notices and the hand weights are back.
    db.execute(delete(Feedback))
    firms, policies = make_world(db)
    log_feedback(db, firms, policies, seed=4, noise=True)
    manifest = ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    assert manifest["used"] is False
    assert rankers.active(tmp_path) is None


def test_too_little_feedback_writes_an_unused_manifest_and_removes_an_old_model(db: Session, tmp_path: Path) -> None:
    firms, policies = make_world(db, n_firms=10, n_policies=3)
    log_feedback(db, firms, policies, seed=2)
    manifest = ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    assert manifest["n_samples"] == 30 and manifest["used"] is False
    assert manifest["reason"].startswith("反馈不足") and "200" in manifest["reason"]
    assert _manifest(tmp_path)["used"] is False
    assert ranker.load(tmp_path) is None

    db.execute(delete(Feedback))
    manifest = ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    assert manifest["n_samples"] == 0 and manifest["auc_model"] is None and manifest["auc_hand"] is None
    assert manifest["used"] is False and manifest["reason"].startswith("反馈不足")
    assert not (tmp_path / "ranker" / "model.skops").exists()  # no model fitted: the earlier file goes


# ---------------------------------------------------------------- recommendations


def _store_result(policy: Any, *, rules: float, tags: float, semantic: float) -> np.ndarray:
    """One stored candidate, as the batch pipeline packs it."""
    w = Weights()
    item = np.zeros(1, dtype=store.ITEM)
    item["policy"], item["status"] = policy.id, 2
    item["rules"], item["tags"], item["semantic"] = (round(x * store.SCALE) for x in (rules, tags, semantic))
    item["cosine"] = 9000
    item["base"] = w.rules * rules + w.tags * tags + w.semantic * semantic
    return item


def test_a_used_ranker_reorders_recommendations_and_an_unused_one_does_not(  # type: ignore[no-untyped-def]
    db: Session, matcher, hidden_rule_feedback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_text = factories.make_policy(db, publish=True, title="中山市企业研发投入后补助")
    shared_tags = factories.make_policy(db, publish=True, title="中山市灯饰照明产业集群扶持资金")
    firm = factories.make_enterprise(db)
    items = np.concatenate(
        [
            _store_result(close_text, rules=1.0, tags=0.05, semantic=0.9),
            _store_result(shared_tags, rules=1.0, tags=0.9, semantic=0.2),
        ]
    )
    firm_row = store.Row(firm.id, catalog_service.current_revision(db=db), firm.profile_updated_at, 2, 0, b"")
    firm_row.payload = store.encode(items, np.zeros(0, dtype=store.NEAR))
    store.write(db, [firm_row])

    def order() -> list[tuple[int, float]]:
        page = recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id)
        return [(r.policy.id, r.score) for r in page.items if r.policy.id in (close_text.id, shared_tags.id)]

    monkeypatch.setattr(matcher, "models_dir", tmp_path / "none")
    hand = order()
    assert [pid for pid, _ in hand] == [close_text.id, shared_tags.id]  # semantic weighs 0.55, tags 0.15
    assert dict(hand)[close_text.id] == pytest.approx(0.25 + 0.15 * 0.05 + 0.55 * 0.9)

    unused = tmp_path / "unused"
    ranker.train(db=db, models_dir=unused, weights=Weights(), min_feedback=10_000)  # wins, but too little feedback
    monkeypatch.setattr(matcher, "models_dir", unused)
    assert order() == hand

    used = tmp_path / "used"
    assert ranker.train(db=db, models_dir=used, weights=Weights(), min_feedback=200)["used"]
    monkeypatch.setattr(matcher, "models_dir", used)
    learned = order()
    assert [pid for pid, _ in learned] == [shared_tags.id, close_text.id]
    model = ranker.RankerCache().active(used)
    assert model is not None
    expected = model.probabilities(np.array([[1.0, 0.9, 0.2, 0.0], [1.0, 0.05, 0.9, 0.0]]))
    assert [s for _, s in learned] == pytest.approx(expected.round(4).tolist())

    # Feedback adjustments still apply on top of the probability; components and reasons are unchanged.
    feedback.record_feedback(db=db, enterprise_id=firm.id, policy_id=close_text.id, action="interested")
    [rec] = [
        r
        for r in recommend.recommend(db=db, matcher=matcher, enterprise_id=firm.id).items
        if r.policy.id == close_text.id
    ]
    assert rec.score == pytest.approx(round(float(expected[1]) + 0.05, 4))
    assert (rec.components.tags, rec.components.semantic) == (0.05, 0.9)
    assert rec.verdict.status == "eligible"


def test_fresh_ranking_scores_with_the_learned_model(  # type: ignore[no-untyped-def]
    db: Session, matcher, hidden_rule_feedback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ranker.train(db=db, models_dir=tmp_path, weights=Weights(), min_feedback=200)
    model = ranker.RankerCache().active(tmp_path)
    assert model is not None
    monkeypatch.setattr(matcher, "models_dir", tmp_path)
    _, items, _ = calculator.calculator(
        db=db, matcher=matcher, attributes={"region_code": "442000", "needs": "研发补助"}
    )
    assert items
    matrix = ranker.component_matrix([r.components for r in items])
    assert [r.score for r in items] == pytest.approx(model.probabilities(matrix).round(4).tolist())
    assert [r.score for r in items] == sorted((r.score for r in items), reverse=True)
    assert [r.score for r in items] != [r.components.score(matcher.weights) for r in items]


def test_score_components_keeps_the_hand_blend_exactly_without_a_model() -> None:
    comps = [
        Components(rules=1.0, tags=0.3, semantic=0.7, urgency=0.5, adjustment=0.05),
        Components(0.5, 0.0, 0.0, 0.0),
    ]
    assert ranker.score_components(comps, Weights(), None) == [c.score(Weights()) for c in comps]
    assert ranker.score_components([], Weights(), None) == []


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HUIQI_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("HUIQI_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("HUIQI_MODELS_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_train_ranker_says_when_there_is_too_little_feedback_and_when_it_wins(cli_env: Path) -> None:
    from core.db import session_scope

    runner = CliRunner()
    assert runner.invoke(cli_app, ["migrate"]).exit_code == 0
    result = runner.invoke(cli_app, ["train", "ranker"])
    assert result.exit_code == 0, result.output
    printed = "".join(result.output.split())
    assert "有效反馈0条" in printed and "反馈不足" in printed and "未启用学习排序" in printed
    assert _manifest(cli_env / "models")["used"] is False

    with session_scope() as db:
        firms, policies = make_world(db)
        log_feedback(db, firms, policies, seed=1)
    result = runner.invoke(cli_app, ["train", "ranker"])
    assert result.exit_code == 0, result.output
    manifest = _manifest(cli_env / "models")
    assert manifest["used"] is True
    printed = "".join(result.output.split())  # rich wraps long lines at spaces
    assert f"学习模型{manifest['auc_model']:.3f}" in printed and f"人工权重{manifest['auc_hand']:.3f}" in printed
    assert f"有效反馈{N_FIRMS * N_POLICIES}条" in printed and "已启用学习排序" in printed


@pytest.mark.parametrize("learned", [False, True])
def test_score_matrix_gives_score_components_numbers_exactly(learned: bool) -> None:
    """The batch ranks a page's cards with `score_matrix`; a page with `score_components`: equal floats, ties included."""
    rng = np.random.default_rng(5)
    n = 5_000
    scale = store.SCALE
    columns = {
        "rules": rng.integers(0, scale + 1, n) / scale,
        "tags": rng.integers(0, 3, n) * 1234 / scale,  # few distinct values: many exact ties
        "semantic": rng.integers(3600, 3800, n) / scale,
        "urgency": rng.choice([0.0, 1.0, 0.5652, 0.087], n),
        "adjustment": rng.choice([0.0, 0.05, -0.05], n),
    }
    components = [
        Components(rules=r, tags=t, semantic=s, urgency=u, adjustment=a)
        for r, t, s, u, a in zip(*(columns[k].tolist() for k in columns), strict=True)
    ]
    weights = Weights()
    model = (
        ranker.LearnedRanker(ranker.FEATURES, np.array([1.3, 0.4, 2.1, 0.7]), -1.1, manifest={}) if learned else None
    )
    matrix = np.column_stack([columns[k] for k in columns])
    expected = ranker.score_components(components, weights, model)
    assert ranker.score_matrix(matrix, weights, model).tolist() == expected
    assert len(set(expected)) < n  # ties, which the page and the batch must break alike


def test_round4_is_pythons_round_to_four_places_ties_included() -> None:
    """`score_matrix` rounds vectorised; its floats must be `round(x, 4)`'s, where numpy's own rounding differs."""
    rng = np.random.default_rng(11)
    values = np.concatenate(
        [
            np.arange(-40_001, 40_002) / 20_000,  # every half of the fourth decimal: ties, as doubles
            rng.random(200_000) * 3 - 1,
            rng.integers(0, 10**6, 50_000) / 10**6,
            (rng.integers(0, 10**4, 50_000) + 0.5) / 10**4,
            np.array([0.0, -0.0, 1e-12, -1e-12, 0.00005, 0.00015, 1.00005, 2.675, 1e300, -1e300]),
        ]
    )
    expected = [round(x, 4) for x in values.tolist()]
    assert ranker.round4(values).tolist() == expected
    assert np.round(values, 4).tolist() != expected  # numpy's own rounding does differ on these
    nan = ranker.round4(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(nan[0]) and nan[1] == np.inf and nan[2] == -np.inf
