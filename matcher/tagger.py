"""The trained policy tagger: character n-gram TF-IDF and one-vs-rest logistic regression.

It learns the curated tags of the catalog from policy texts (title, summary, interpretation), so
that staff get tag suggestions for a new policy beyond what the vocabulary's keywords and the
eligibility rules imply (matcher/tags.py). Character n-grams need no word segmentation and suit
short Chinese texts; class-balanced logistic regression keeps rare tags from never firing.

Evaluation is out-of-fold: 5-fold cross-validation (shuffled with the seed) gives every policy a
prediction from a model that never saw it. The regularisation C (a three-value grid) and one
probability threshold are chosen for micro-F1; the reported figures apply to each fold the (C,
threshold) chosen on the *other* folds, so the choice never sees the labels it is scored on. The
stored threshold is the one chosen on all out-of-fold predictions; the model is then refitted on
every policy.

Files, under ``<models_dir>/tagger/``: ``model.skops`` (skops, never pickle: loading cannot run
code) and ``manifest.json`` (versions, data hash, tags, threshold, metrics, the model's sha256).
Both are written atomically, model first: a crash between the two leaves a checksum mismatch,
and `load` then returns None until the next training.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.model_selection import KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from catalog.models import Policy
from core import modelfiles
from core.errors import ValidationFailed
from core.files import atomic_write
from core.text import normalize

log = logging.getLogger(__name__)

MODEL_KIND = "policy-tagger/char-tfidf-ovr-logreg"
FORMAT = 1
SUBDIR = "tagger"


MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"

CV_FOLDS = 5
C_GRID = (1.0, 10.0, 100.0)  # "tuned lightly": on the demo, micro-F1 is flat (±0.01) from C = 10 to 1000
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)
MIN_POLICIES = 2 * CV_FOLDS  # below this a fold holds one or two policies and the scores mean nothing
PRECISION_AT = 3

# Types a trained tagger may contain beyond what skops trusts by default. Anything else in a model
# file (a function such as os.system, a class from another package) makes load refuse the file.
ALLOWED_TYPES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.multiclass.OneVsRestClassifier",
        "sklearn.multiclass._ConstantPredictor",  # a tag present in every or no training policy
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.preprocessing._label.LabelBinarizer",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
)

# OneVsRest warns when a fold's training part holds no policy with a rare tag; that is expected.
_CONSTANT_LABEL_WARNING = r"Label .* is present in all training examples"


class Tagger:
    """A loaded policy tagger: suggests learned tags with their probabilities."""

    def __init__(self, pipeline: Pipeline, tags: Sequence[str], threshold: float, manifest: dict[str, Any]) -> None:
        self.pipeline = pipeline
        self.tags = list(tags)
        self.threshold = float(threshold)
        self.manifest = manifest

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Return the probability of every learned tag for each text (rows follow texts)."""
        clean = [normalize(t) for t in texts]
        return np.asarray(self.pipeline.predict_proba(clean), dtype=float).reshape(len(clean), len(self.tags))

    def suggest(self, text: str, *, limit: int = 8) -> list[tuple[str, float]]:
        """Return (tag, probability) for tags above the stored threshold, best first."""
        if limit <= 0 or not normalize(text):
            return []
        probs = self.probabilities([text])[0]
        order = np.argsort(-probs, kind="stable")
        return [(self.tags[i], float(probs[i])) for i in order[:limit] if probs[i] >= self.threshold]


# ---------------------------------------------------------------- training data


def policy_input_text(policy: Any) -> str:
    """Return the text the tagger reads for a policy: its title, summary and interpretation."""
    parts = (getattr(policy, "title", None), getattr(policy, "summary", None), getattr(policy, "interpretation", None))
    return normalize(" ".join(p for p in parts if p))


def training_data(*, db: Session) -> list[tuple[str, tuple[str, ...]]]:
    """Return (text, curated tag names) of every policy with at least one tag, in a stable order."""
    policies = db.scalars(select(Policy).options(selectinload(Policy.tags)).order_by(Policy.id))
    pairs = [(policy_input_text(p), tuple(sorted(t.name for t in p.tags))) for p in policies if p.tags]
    # Sorted by content, not id: the same catalog gives the same folds and model wherever it lives.
    return sorted(pairs)


def data_hash(pairs: Iterable[tuple[str, Sequence[str]]]) -> str:
    """Return the sha256 of the sorted (text, sorted labels) pairs."""
    canonical = sorted((text, sorted(labels)) for text, labels in pairs)
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def make_pipeline(*, c: float, seed: int) -> Pipeline:
    """Return the untrained pipeline: char_wb 1–3-gram TF-IDF, then balanced one-vs-rest logistic regression."""
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)),
            (
                "clf",
                OneVsRestClassifier(
                    # liblinear's dual form: far fewer samples than n-gram features, so it is the fast
                    # side (0.3 s against 5–30 s for primal liblinear or lbfgs on the demo); same optimum.
                    LogisticRegression(
                        class_weight="balanced", max_iter=2000, C=c, solver="liblinear", dual=True, random_state=seed
                    )
                ),
            ),
        ]
    )


# ---------------------------------------------------------------- evaluation


def _micro_f1_by_threshold(probs: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Return micro-F1 at every threshold of THRESHOLDS."""
    positive = probs[..., None] >= THRESHOLDS  # (policies, tags, thresholds)
    actual = truth.astype(bool)[..., None]
    tp = (positive & actual).sum(axis=(0, 1))
    fp = (positive & ~actual).sum(axis=(0, 1))
    fn = (~positive & actual).sum(axis=(0, 1))
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(len(THRESHOLDS)), where=denom > 0)


def _choose(oof: dict[float, np.ndarray], truth: np.ndarray, rows: np.ndarray) -> tuple[float, float, float]:
    """Return (micro-F1, C, threshold) maximising micro-F1 on the given rows; ties go to smaller C and threshold."""
    best = (-1.0, C_GRID[0], float(THRESHOLDS[0]))
    for c in C_GRID:
        scores = _micro_f1_by_threshold(oof[c][rows], truth[rows])
        i = int(np.argmax(scores))
        if scores[i] > best[0]:
            best = (float(scores[i]), c, float(THRESHOLDS[i]))
    return best


def _out_of_fold(
    texts: np.ndarray, truth: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int
) -> dict[float, np.ndarray]:
    """Return, for every C of the grid, each policy's probabilities from the model of the fold that held it out."""
    oof = {c: np.zeros(truth.shape) for c in C_GRID}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSTANT_LABEL_WARNING, category=UserWarning)
        for train_rows, test_rows in folds:
            # The vectoriser is fitted on the training part only, as the pipeline would; shared across C.
            tfidf = make_pipeline(c=1.0, seed=seed).named_steps["tfidf"]
            x_train = tfidf.fit_transform(texts[train_rows])
            x_test = tfidf.transform(texts[test_rows])
            for c in C_GRID:
                clf = make_pipeline(c=c, seed=seed).named_steps["clf"]
                clf.fit(x_train, truth[train_rows])
                oof[c][test_rows] = clf.predict_proba(x_test)
    return oof


def _precision_at(probs: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Return mean precision of the k most probable tags over policies with at least one learned tag."""
    rows = truth.any(axis=1)
    if not rows.any():
        return 0.0
    k = min(k, truth.shape[1])
    top = np.argsort(-probs[rows], axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(truth[rows], top, axis=1).mean())


def _evaluate(
    oof: dict[float, np.ndarray], truth: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], tags: list[str]
) -> dict[str, Any]:
    """Score out-of-fold predictions, each fold at the (C, threshold) chosen on the other folds."""
    probs = np.zeros(truth.shape)
    predicted = np.zeros(truth.shape, dtype=bool)
    chosen = []
    for k, (_, test_rows) in enumerate(folds):
        other_rows = np.concatenate([rows for j, (_, rows) in enumerate(folds) if j != k])
        _, c, threshold = _choose(oof, truth, other_rows)
        probs[test_rows] = oof[c][test_rows]
        predicted[test_rows] = oof[c][test_rows] >= threshold
        chosen.append({"C": c, "threshold": threshold})
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None, zero_division=0)
    micro_p, micro_r, _, _ = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    return {
        "cv_folds": len(folds),
        "micro_f1": round(float(f1_score(truth, predicted, average="micro", zero_division=0)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
        "micro_precision": round(float(micro_p), 4),
        "micro_recall": round(float(micro_r), 4),
        f"precision_at_{PRECISION_AT}": round(_precision_at(probs, truth, PRECISION_AT), 4),
        "chosen_per_fold": chosen,
        "per_tag": {
            tag: {
                "f1": round(float(f1[i]), 4),
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "support": int(support[i]),
            }
            for i, tag in enumerate(tags)
        },
    }


# ---------------------------------------------------------------- training


_versions = modelfiles.library_versions


def train(*, db: Session, models_dir: Path, min_examples: int = 3, seed: int = 0) -> dict[str, Any]:
    """Cross-validate and train the tagger on the curated tags, write model and manifest; return the manifest."""
    if min_examples < 1:
        raise ValidationFailed("min_examples 至少为 1", code="matcher.tagger_min_examples_invalid")
    started = time.perf_counter()
    pairs = training_data(db=db)
    counts = Counter(name for _, labels in pairs for name in labels)
    tags = sorted(name for name, n in counts.items() if n >= min_examples)
    if len(pairs) < MIN_POLICIES or len(tags) < 2:
        raise ValidationFailed(
            f"训练数据不足：需要至少 {MIN_POLICIES} 条已标注政策、2 个不少于 {min_examples} 条政策的标签，"
            f"现有 {len(pairs)} 条政策、{len(tags)} 个标签",
            code="matcher.tagger_training_data_insufficient",
        )
    texts = np.array([text for text, _ in pairs], dtype=object)
    learned = set(tags)
    truth = MultiLabelBinarizer(classes=tags).fit_transform(
        [[n for n in labels if n in learned] for _, labels in pairs]
    )
    folds = list(KFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed).split(texts))

    oof = _out_of_fold(texts, truth, folds, seed)
    metrics = _evaluate(oof, truth, folds, tags)
    selection_f1, c, threshold = _choose(oof, truth, np.arange(len(pairs)))
    metrics["selection_micro_f1"] = round(selection_f1, 4)  # optimistic: chosen and scored on the same predictions

    pipeline = make_pipeline(c=c, seed=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CONSTANT_LABEL_WARNING, category=UserWarning)
        pipeline.fit(list(texts), truth)

    hashed = data_hash(pairs)
    versions = _versions()
    bundle = {
        "format": FORMAT,
        "pipeline": pipeline,
        "tags": tags,
        "threshold": threshold,
        "data_hash": hashed,
        "sklearn_version": versions["sklearn"],
    }
    # Deflate: the TF-IDF vocabulary dominates the schema and compresses about 7:1.
    blob = modelfiles.sio().dumps(bundle, compression=zipfile.ZIP_DEFLATED)
    seconds = round(time.perf_counter() - started, 2)
    manifest = {
        "kind": MODEL_KIND,
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "data_hash": hashed,
        "n_policies": len(pairs),
        "min_examples": min_examples,
        "seed": seed,
        "tags": tags,
        "tag_counts": {name: counts[name] for name in tags},
        "threshold": threshold,
        "params": {
            "analyzer": "char_wb",
            "ngram_range": [1, 3],
            "sublinear_tf": True,
            "min_df": 1,
            "class_weight": "balanced",
            "solver": "liblinear",
            "dual": True,
            "max_iter": 2000,
            "C": c,
            "C_grid": list(C_GRID),
        },
        "metrics": metrics,
        "training_seconds": seconds,
        "model_file": MODEL_FILE,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "model_bytes": len(blob),
    }
    directory = Path(models_dir) / SUBDIR
    atomic_write(directory / MODEL_FILE, blob)
    atomic_write(directory / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
    log.info(
        "trained policy tagger on %d policies, %d tags in %.1fs: cv micro-F1 %.3f, macro-F1 %.3f, threshold %.2f",
        len(pairs),
        len(tags),
        seconds,
        metrics["micro_f1"],
        metrics["macro_f1"],
        threshold,
    )
    return manifest


# ---------------------------------------------------------------- loading


_Refused = modelfiles.Refused


_minor = modelfiles.minor


def load(models_dir: Path) -> Tagger | None:
    """Load the trained tagger if its files are present, consistent and safe; return None (and log why) otherwise."""
    directory = Path(models_dir) / SUBDIR
    if not (directory / MODEL_FILE).exists() and not (directory / MANIFEST_FILE).exists():
        log.info("no trained policy tagger in %s; classifier suggestions are off", directory)
        return None
    try:
        return _load(directory)
    except _Refused as why:
        log.warning("policy tagger in %s not used: %s", directory, why)
    except Exception as exc:  # a bad file must switch suggestions off, never fail start-up
        log.warning("policy tagger in %s unreadable: %s: %s", directory, type(exc).__name__, exc)
    return None


def _load(directory: Path) -> Tagger:
    model_path, manifest_path = directory / MODEL_FILE, directory / MANIFEST_FILE
    if not manifest_path.is_file():
        raise _Refused("manifest missing")
    if not model_path.is_file():
        raise _Refused("model file missing")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict):
        raise _Refused("manifest is not a JSON object")
    if manifest.get("kind") != MODEL_KIND or manifest.get("format") != FORMAT:
        raise _Refused(
            f"manifest is {manifest.get('kind')!r} format {manifest.get('format')!r}, expected {MODEL_KIND} {FORMAT}"
        )
    stored = manifest.get("versions") or {}
    modelfiles.check_versions(stored)
    bundle = modelfiles.load_bundle(
        model_path,
        manifest,
        ALLOWED_TYPES,
        format=FORMAT,
        holds=("pipeline", Pipeline),
        what="tagger",
        same_as_manifest=("data_hash", "tags", "threshold"),
    )
    if _minor(bundle.get("sklearn_version")) != _minor(stored.get("sklearn")):
        raise _Refused("sklearn version in the manifest differs from the model file")
    pipeline: Pipeline = bundle["pipeline"]
    tags = list(bundle["tags"])
    clf = pipeline.steps[-1][1]
    if not isinstance(clf, OneVsRestClassifier) or len(getattr(clf, "estimators_", ())) != len(tags):
        raise _Refused("classifier does not cover the manifest's tags")
    threshold = float(bundle["threshold"])
    if not 0.0 < threshold < 1.0:
        raise _Refused(f"threshold {threshold} outside (0, 1)")
    log.info("loaded policy tagger (%d tags, threshold %.2f) from %s", len(tags), threshold, directory)
    return Tagger(pipeline, tags, threshold, manifest)
