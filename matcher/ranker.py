"""The learned ranker: logistic regression on the firms' logged feedback over the ranking's components.

Every feedback row (matcher.models.Feedback) keeps the component scores the firm saw. The latest
word per (firm, policy) is a label: interested or applied → 1, not relevant → 0. The features are
the components the ranking computes for every candidate (rules, tags, semantic, urgency — those
present in the log; a component missing from an older row counts as 0, which is what urgency is
for a policy without an application window). Keys the ranking cannot compute for a candidate are
reported and left out.

Evaluation is on held-out firms: a deterministic stratified split into 4 parts grouped by firm
(StratifiedGroupKFold, seeded), so each part holds out about 25% of the rows and no firm is on both
sides. Every row is scored by the model fitted on the other three parts, so all feedback serves as
held-out data once (a single 25% part alone gave AUCs too noisy to decide on at a few hundred rows).
The hand-set blend (settings' weights on the same components) needs no fitting and is scored on the
same rows; both by ROC AUC. The stored model is then refitted on every row.

The model is *used* only when (1) there are at least ``ranker_min_feedback`` labelled rows, (2) its
held-out AUC is above the hand blend's and (3) that gain is more than sampling noise: the lower
end of a 90% bootstrap interval of the AUC difference, resampling held-out firms, is above 0.
Without (3), a model fitted to pure noise beats the hand blend about half the time.

When used, a recommendation's score is the model's probability that the firm finds the policy
useful, plus the same per-firm feedback adjustment as before (interested +0.05, applied −0.15);
components and reasons are unchanged. Otherwise scores are the hand blend.

Files, under ``<models_dir>/ranker/``: ``model.skops`` (skops, never pickle) and ``manifest.json``
(counts, features, AUCs, coefficients, ``used`` and why, the model's sha256). Both are written
atomically, model first; when no model could be fitted the manifest says so and an older model
file is removed. The loaded model is cached per directory and file stamp (inode, size, mtime), so
a retraining is picked up by the next request without a restart.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import operator
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import modelfiles
from core.files import atomic_write
from matcher.models import Feedback
from matcher.ranking import Components, Weights

log = logging.getLogger(__name__)

MODEL_KIND = "ranker/logreg-components"
FORMAT = 1
SUBDIR = "ranker"


MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"

# The components the ranking computes for every candidate, in the order of the feature matrix.
FEATURES = ("rules", "tags", "semantic", "urgency")
# A feedback row without these was logged with no stored match result; it says nothing about the components.
REQUIRED = ("rules", "tags", "semantic")
# Keys of Feedback.components that are not features: the verdict (the rules score carries it) and
# the hand blend the firm was shown (a function of the features).
NOT_FEATURES = frozenset({"status", "score"})
POSITIVE = frozenset({"interested", "applied"})
NEGATIVE = frozenset({"not_relevant"})

HOLDOUT_FOLDS = 4  # each held-out part is one fold of four (25% of rows); every row is held out once
BOOTSTRAP = 1000
CONFIDENCE = 0.90
C = 1.0

ALLOWED_TYPES = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
    }
)


# ---------------------------------------------------------------- dataset


@dataclass
class Dataset:
    """Labelled feedback: one row per (firm, policy), its latest word."""

    features: list[str]
    x: np.ndarray  # (n, len(features)) float
    y: np.ndarray  # (n,) int 0/1
    groups: np.ndarray  # (n,) enterprise ids
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (enterprise_id, policy_id) per row
    skipped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)  # feature → rows where it was missing (counted 0)
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def n_pos(self) -> int:
        return int(self.y.sum())

    @property
    def n_neg(self) -> int:
        return self.n - self.n_pos


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def build_dataset(*, db: Session) -> Dataset:
    """Read the feedback log: the latest action per (firm, policy), labelled, with its components."""
    latest: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}
    for eid, pid, action, components in db.execute(
        select(Feedback.enterprise_id, Feedback.policy_id, Feedback.action, Feedback.components).order_by(
            Feedback.created_at, Feedback.id
        )
    ):
        latest[(eid, pid)] = (action, components or {})
    skipped = {"other_action": 0, "no_components": 0}
    kept: list[tuple[tuple[int, int], int, dict[str, float]]] = []
    ignored: set[str] = set()
    for pair in sorted(latest):
        action, components = latest[pair]
        if action in POSITIVE:
            label = 1
        elif action in NEGATIVE:
            label = 0
        else:
            skipped["other_action"] += 1
            continue
        values = {k: _number(v) for k, v in components.items()}
        if any(values.get(k) is None for k in REQUIRED):
            skipped["no_components"] += 1
            continue
        ignored |= {k for k, v in values.items() if v is not None and k not in FEATURES and k not in NOT_FEATURES}
        kept.append((pair, label, {k: v for k, v in values.items() if v is not None}))
    features = [f for f in FEATURES if any(f in values for _, _, values in kept)]
    x = np.array([[values.get(f, 0.0) for f in features] for _, _, values in kept], dtype=float).reshape(
        len(kept), len(features)
    )
    return Dataset(
        features=features,
        x=x,
        y=np.array([label for _, label, _ in kept], dtype=int),
        groups=np.array([pair[0] for pair, _, _ in kept], dtype=np.int64),
        pairs=[pair for pair, _, _ in kept],
        skipped=skipped,
        filled={f: sum(1 for _, _, values in kept if f not in values) for f in features},
        ignored_keys=sorted(ignored),
    )


# ---------------------------------------------------------------- evaluation


def hand_scores(x: np.ndarray, features: Sequence[str], weights: Weights) -> np.ndarray:
    """Return the hand-set blend (settings' weights) of the given feature columns."""
    w = np.array([float(getattr(weights, f)) for f in features], dtype=float)
    return x @ w


def holdout_folds(y: np.ndarray, groups: np.ndarray, *, seed: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Return HOLDOUT_FOLDS (train rows, held-out rows) splits, stratified and grouped by firm; None when impossible.

    Every held-out part is about 25% of the rows and holds both labels; the parts cover every row once.
    """
    if len(np.unique(groups)) < HOLDOUT_FOLDS or min(int(y.sum()), int((1 - y).sum())) < HOLDOUT_FOLDS:
        return None
    splitter = StratifiedGroupKFold(n_splits=HOLDOUT_FOLDS, shuffle=True, random_state=seed)
    folds = list(splitter.split(np.zeros(len(y)), y, groups))
    if any(len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2 for train, test in folds):
        return None
    return folds


def fit(x: np.ndarray, y: np.ndarray, *, seed: int) -> LogisticRegression:
    """Fit the ranker's logistic regression."""
    return LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(x, y)


def _weighted_aucs(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Return ROC AUC for each row of weights (resample multiplicities of the rows); ties count a half."""
    values, inverse = np.unique(scores, return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(scores)), (np.arange(len(scores)), inverse)), shape=(len(scores), len(values))
    )
    pos = np.asarray((sparse.csr_matrix(weights * (y == 1)) @ onehot).todense())  # (B, distinct scores)
    neg = np.asarray((sparse.csr_matrix(weights * (y == 0)) @ onehot).todense())
    below = np.cumsum(neg, axis=1) - neg
    denom = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / denom  # NaN where a resample lacks a class


def bootstrap_gain(
    y: np.ndarray, model_scores: np.ndarray, hand: np.ndarray, groups: np.ndarray, *, seed: int
) -> tuple[float, float]:
    """Return the CONFIDENCE interval of AUC(model) − AUC(hand), resampling firms with replacement.

    Rows of a firm move together (their labels are not independent). Vectorised: each resample is a
    vector of row multiplicities and its AUCs come from one sort of the scores.
    """
    rng = np.random.default_rng(seed)
    firms, inverse = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(len(firms), np.full(len(firms), 1 / len(firms)), size=BOOTSTRAP)  # (B, firms)
    gains = []
    step = max(1, 2_000_000 // max(len(y), 1))  # bounds the (resamples, rows) weight matrix to ~16 MB
    for start in range(0, BOOTSTRAP, step):
        weights = counts[start : start + step][:, inverse].astype(float)
        gains.append(_weighted_aucs(y, model_scores, weights) - _weighted_aucs(y, hand, weights))
    gain = np.concatenate(gains)
    gain = gain[np.isfinite(gain)]
    if not len(gain):
        return float("nan"), float("nan")
    tail = (1 - CONFIDENCE) / 2 * 100
    lo, hi = np.percentile(gain, [tail, 100 - tail])
    return float(lo), float(hi)


@dataclass
class Evaluation:
    """Held-out comparison of the learned model and the hand blend."""

    auc_model: float | None = None
    auc_hand: float | None = None
    gain_interval: tuple[float, float] | None = None
    fold_sizes: list[int] = field(default_factory=list)
    fold_firms: list[int] = field(default_factory=list)
    fold_auc_model: list[float] = field(default_factory=list)
    fold_auc_hand: list[float] = field(default_factory=list)


def evaluate(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, features: Sequence[str], weights: Weights, *, seed: int
) -> Evaluation:
    """Score model and hand blend on held-out firms: each row predicted by a model fitted without its firm."""
    folds = holdout_folds(y, groups, seed=seed) if len(y) and features else None
    if folds is None:
        return Evaluation()
    held_out = np.zeros(len(y))
    hand = hand_scores(x, features, weights)
    ev = Evaluation()
    for train, test in folds:
        held_out[test] = fit(x[train], y[train], seed=seed).predict_proba(x[test])[:, 1]
        ev.fold_sizes.append(len(test))
        ev.fold_firms.append(len(np.unique(groups[test])))
        ev.fold_auc_model.append(round(float(roc_auc_score(y[test], held_out[test])), 4))
        ev.fold_auc_hand.append(round(float(roc_auc_score(y[test], hand[test])), 4))
    ev.auc_model = float(roc_auc_score(y, held_out))
    ev.auc_hand = float(roc_auc_score(y, hand))
    ev.gain_interval = bootstrap_gain(y, held_out, hand, groups, seed=seed)
    return ev


def decide(ev: Evaluation, n: int, min_feedback: int) -> tuple[bool, str]:
    """Tell whether the learned model is used, and why (in Chinese, for the CLI and the manifest)."""
    if ev.auc_model is None or ev.auc_hand is None:
        return False, "反馈不足：无法划分出正负例俱全、按企业分组的留出集，未评估；继续使用人工权重"
    if n < min_feedback:
        return (
            False,
            f"反馈不足：有效反馈 {n} 条，少于阈值 {min_feedback} 条（HUIQI_RANKER_MIN_FEEDBACK）；继续使用人工权重",
        )
    if ev.auc_model <= ev.auc_hand:
        return False, f"学习模型留出集 AUC {ev.auc_model:.3f} 未超过人工权重的 {ev.auc_hand:.3f}；继续使用人工权重"
    lo = ev.gain_interval[0] if ev.gain_interval else float("nan")
    if not lo > 0:
        return False, (
            f"学习模型留出集 AUC {ev.auc_model:.3f} 虽高于人工权重的 {ev.auc_hand:.3f}，但差距在抽样误差之内"
            f"（按企业自助抽样 {CONFIDENCE:.0%} 区间下限 {lo:+.3f}）；继续使用人工权重"
        )
    return True, (
        f"学习模型留出集 AUC {ev.auc_model:.3f} 高于人工权重的 {ev.auc_hand:.3f}"
        f"（{CONFIDENCE:.0%} 区间下限 {lo:+.3f}），有效反馈 {n} 条 ≥ {min_feedback} 条：已启用"
    )


# ---------------------------------------------------------------- training


_versions = modelfiles.library_versions


def _round(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)


def train(*, db: Session, models_dir: Path, weights: Weights, min_feedback: int, seed: int = 0) -> dict[str, Any]:
    """Build the dataset from the feedback log, evaluate, fit, write model and manifest; return the manifest."""
    started = time.perf_counter()
    data = build_dataset(db=db)
    ev = evaluate(data.x, data.y, data.groups, data.features, weights, seed=seed)
    used, reason = decide(ev, data.n, min_feedback)
    model = fit(data.x, data.y, seed=seed) if ev.auc_model is not None else None
    directory = Path(models_dir) / SUBDIR
    manifest: dict[str, Any] = {
        "kind": MODEL_KIND,
        "format": FORMAT,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "n_samples": data.n,
        "n_pos": data.n_pos,
        "n_neg": data.n_neg,
        "n_firms": len(np.unique(data.groups)),
        "skipped": data.skipped,
        "features": data.features,
        "missing_counted_as_zero": data.filled,
        "ignored_keys": data.ignored_keys,
        "hand_weights": {f: float(getattr(weights, f)) for f in data.features},
        "auc_model": _round(ev.auc_model),
        "auc_hand": _round(ev.auc_hand),
        "auc_gain_interval": [_round(v) for v in ev.gain_interval] if ev.gain_interval else None,
        "confidence": CONFIDENCE,
        "bootstrap": BOOTSTRAP,
        "holdout": {
            "method": f"StratifiedGroupKFold({HOLDOUT_FOLDS}) by firm; every row scored by the model of the fold "
            "that held its firm out",
            "rows_per_fold": ev.fold_sizes,
            "firms_per_fold": ev.fold_firms,
            "auc_model_per_fold": ev.fold_auc_model,
            "auc_hand_per_fold": ev.fold_auc_hand,
        },
        "min_feedback": min_feedback,
        "seed": seed,
        "params": {"C": C, "solver": "lbfgs", "max_iter": 1000},
        "coefficients": None,
        "intercept": None,
        "used": used,
        "reason": reason,
        "score": "probability of interested/applied + feedback adjustment" if used else "hand-weighted blend",
    }
    if model is not None:
        manifest["coefficients"] = {f: round(float(c), 6) for f, c in zip(data.features, model.coef_[0], strict=True)}
        manifest["intercept"] = round(float(model.intercept_[0]), 6)
        blob = modelfiles.sio().dumps({"format": FORMAT, "model": model, "features": data.features})
        manifest |= {
            "model_file": MODEL_FILE,
            "model_sha256": hashlib.sha256(blob).hexdigest(),
            "model_bytes": len(blob),
        }
        manifest["training_seconds"] = round(time.perf_counter() - started, 3)
        atomic_write(directory / MODEL_FILE, blob)
        atomic_write(directory / MANIFEST_FILE, _dump(manifest))
    else:
        manifest["training_seconds"] = round(time.perf_counter() - started, 3)
        atomic_write(directory / MANIFEST_FILE, _dump(manifest))
        (directory / MODEL_FILE).unlink(missing_ok=True)
    log.info(
        "ranker: %d samples (%d pos), auc model %s vs hand %s, used=%s",
        data.n,
        data.n_pos,
        manifest["auc_model"],
        manifest["auc_hand"],
        used,
    )
    return manifest


def _dump(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")


# ---------------------------------------------------------------- loading and scoring


@dataclass(frozen=True)
class LearnedRanker:
    """A loaded ranker in use: the logistic regression's coefficients over a subset of FEATURES."""

    features: tuple[str, ...]
    coef: np.ndarray  # (len(features),)
    intercept: float
    manifest: dict[str, Any]

    def probabilities(self, matrix: np.ndarray) -> np.ndarray:
        """Return P(useful) for rows of a (n, len(FEATURES)) component matrix, in one vectorised step."""
        # The model's features as a weight per FEATURES column (0 for a component it was not trained on).
        weights = np.zeros(len(FEATURES))
        weights[[FEATURES.index(f) for f in self.features]] = self.coef
        return 1.0 / (1.0 + np.exp(-(matrix @ weights + self.intercept)))


def score_matrix(matrix: np.ndarray, weights: Weights, learned: LearnedRanker | None) -> np.ndarray:
    """Return `score_components`'s scores for an (n, len(FEATURES) + 1) matrix: features, then adjustment.

    The same numbers, not just the same order: the hand blend adds the same products in the same order
    (IEEE doubles, as `Components.score` does) and rounds each with Python's `round`; the learned
    score is the same vectorised expression. The batch uses it to know which candidates a page shows.
    """
    if learned is not None:
        return np.round(learned.probabilities(matrix[:, : len(FEATURES)]) + matrix[:, -1], 4)
    raw = (
        weights.rules * matrix[:, 0]
        + weights.tags * matrix[:, 1]
        + weights.semantic * matrix[:, 2]
        + weights.urgency * matrix[:, 3]
        + matrix[:, 4]
    )
    return round4(raw)


def round4(values: np.ndarray) -> np.ndarray:
    """Python's `round(x, 4)` of every value, vectorised: the same floats, not numpy's `np.round`.

    `np.round` scales by 10⁴ (inexactly) and rounds half to even on the scaled double, so near a tie it
    can round the other way from `round`, which rounds the exact binary value. Away from a tie both give
    the same integer n, and n / 10⁴ is the double nearest to the decimal either way; the few values whose
    scaled form lies within 10⁻⁶ of a tie (or is not finite) are rounded by `round` itself.
    """
    values = np.asarray(values, dtype=np.float64)
    scaled = values * 1e4
    out = np.rint(scaled) / 1e4
    with np.errstate(invalid="ignore"):
        doubt = ~(np.abs(np.abs(scaled - np.floor(scaled)) - 0.5) > 1e-6)  # near a tie, or NaN / inf
    if doubt.any():
        rows = np.flatnonzero(doubt)
        out[rows] = [round(x, 4) for x in values[rows].tolist()]
    return out


_GETTERS = [operator.attrgetter(name) for name in (*FEATURES, "adjustment")]


def _stack(components: Sequence[Components]) -> np.ndarray:
    """Return an (n, len(FEATURES) + 1) matrix: the features, then the feedback adjustment.

    Column by column through np.fromiter: only floats are created, no per-row tuples or lists, so a
    large batch does not set off the cyclic garbage collector (a full collection cost ~0.6 s at 10k
    candidates in bench/ranker.py when rows were built as tuples).
    """
    out = np.empty((len(FEATURES) + 1, len(components)))
    for row, getter in zip(out, _GETTERS, strict=True):
        row[:] = np.fromiter(map(getter, components), dtype=float, count=len(components))
    return out.T


def component_matrix(components: Sequence[Components]) -> np.ndarray:
    """Stack components into an (n, len(FEATURES)) matrix, columns in FEATURES order."""
    return _stack(components)[:, : len(FEATURES)]


def score_components(components: Sequence[Components], weights: Weights, learned: LearnedRanker | None) -> list[float]:
    """Return the score of each candidate: hand blend as always, or the learned probability plus adjustment."""
    if learned is None:
        return [c.score(weights) for c in components]
    if not components:
        return []
    stacked = _stack(components)
    return np.round(learned.probabilities(stacked[:, : len(FEATURES)]) + stacked[:, -1], 4).tolist()


_Refused = modelfiles.Refused


_minor = modelfiles.minor


def load(models_dir: Path) -> LearnedRanker | None:
    """Load the ranker if one is trained, marked used, consistent and safe; None (hand weights) otherwise."""
    directory = Path(models_dir) / SUBDIR
    if not (directory / MANIFEST_FILE).exists():
        log.debug("no trained ranker in %s; hand-set weights rank", directory)
        return None
    try:
        return _load(directory)
    except _Refused as why:
        log.info("ranker in %s not used: %s", directory, why)
    except Exception as exc:  # a bad file must fall back to the hand weights, never fail a request
        log.warning("ranker in %s unreadable: %s: %s", directory, type(exc).__name__, exc)
    return None


def _load(directory: Path) -> LearnedRanker:
    manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("kind") != MODEL_KIND or manifest.get("format") != FORMAT:
        raise _Refused("manifest is not a ranker manifest of this format")
    if manifest.get("used") is not True:
        raise _Refused(f"manifest says not used: {manifest.get('reason')}")
    stored = manifest.get("versions") or {}
    for name, version in _versions().items():
        if name != "numpy" and _minor(stored.get(name)) != _minor(version):
            raise _Refused(f"trained with {name} {stored.get(name)}, running {version}; retrain")
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise _Refused("model file missing")
    bundle = modelfiles.load_bundle(
        model_path, manifest, ALLOWED_TYPES, format=FORMAT, holds=("model", LogisticRegression), what="ranker"
    )
    features = tuple(bundle.get("features") or ())
    if list(features) != manifest.get("features") or not features or not set(features) <= set(FEATURES):
        raise _Refused(f"features {features} differ from the manifest or are not ranking components")
    model: LogisticRegression = bundle["model"]
    coef = np.asarray(model.coef_, dtype=float).reshape(-1)
    if coef.shape != (len(features),) or list(model.classes_) != [0, 1]:
        raise _Refused("model shape does not match its features")
    expected = manifest.get("coefficients") or {}
    if any(abs(expected.get(f, np.inf) - c) > 1e-5 for f, c in zip(features, coef, strict=True)):
        raise _Refused("coefficients in the manifest differ from the model file")
    log.info("learned ranker in use from %s: %s", directory, manifest.get("reason"))
    return LearnedRanker(features=features, coef=coef, intercept=float(model.intercept_[0]), manifest=manifest)


def _stamp(directory: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for name in (MANIFEST_FILE, MODEL_FILE):
        try:
            st = os.stat(directory / name)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class RankerCache:
    """The learned rankers in use, by models dir; the Matcher owns one for its lifetime."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[Any, ...], LearnedRanker | None]] = {}
        self._lock = threading.Lock()

    def active(self, models_dir: Path) -> LearnedRanker | None:
        """Return the ranker in use under models_dir, loaded once per change of its files (two stat calls otherwise)."""
        directory = Path(models_dir) / SUBDIR
        stamp = _stamp(directory)
        cached = self._cache.get(directory)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with self._lock:
            cached = self._cache.get(directory)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            ranker = load(Path(models_dir))
            self._cache[directory] = (stamp, ranker)
            return ranker
