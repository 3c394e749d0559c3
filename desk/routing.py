"""Routing a case to the department that handles it (统一分拨), with a model selected by cross-validation.

`route_case` decides in this order:

1. **policy** — a case about a policy goes to the policy's handling department (its issuing one
   when no handling department is set);
2. **classifier** — the trained model's top department, when its calibrated probability reaches
   the model's one auto-route threshold (chosen on held-out folds for `TARGET_PRECISION`; the
   same for every text, whatever words it holds);
3. **keywords** — a small table of words per department (`KEYWORDS`), only when cross-validation
   found it right at least `TARGET_PRECISION` of the time on the cases the model leaves, and one
   department clearly wins (confidence ≥ `KEYWORD_MIN_CONFIDENCE`);
4. **dispatch** — otherwise the case waits in the central dispatch queue for a person to assign
   (department None); the model's best guesses are kept as candidates for the dispatcher.

Training (`huiqi desk train FILE`): a CSV/XLSX of ``content,department[,kind]`` rows read through
`core.tabular` with the row-level report, plus the staff's reassignments from the database
(`reassignment_examples`). `select_model` scores the plain baseline (char n-gram TF-IDF +
LinearSVC, balanced classes) and every candidate of `SPECS` on the same stratified 5 folds, each
example predicted by a model that never saw it: character n-gram TF-IDF with a calibrated linear
SVM or logistic regression, the same with the keyword table as a scaled feature block, the
matcher's e5 sentence embeddings with logistic regression, and ensembles (mean probability). All
use balanced class weights and sigmoid calibration (`CalibratedClassifierCV`). The best
out-of-fold macro-F1 wins; its out-of-fold probabilities choose the threshold. A winner below the
baseline is refused (`LosesToBaseline`): nothing is written. A winner that reads embeddings also
carries the best text-only candidate with its own threshold, used where no embedder is at hand
(imports, a case sent back to a person).

Files, under ``<models_dir>/desk_router/``: ``model.skops`` (skops, never pickle) and
``manifest.json`` (candidates' scores, the selected one, threshold, classes, n, trained_at,
versions, the model's sha256), written atomically, model first; a mismatch makes `load` refuse.

Out of the box — no trained model on disk — `route_case` trains once per process on the labelled
history the demo ships (``desk/demo_data/routing_history.csv``, written by the team): in memory,
deterministic, the text-only candidate and threshold `select_model` picks on that history
(`DEMO_SPEC`, `DEMO_THRESHOLD`, `DEMO_KEYWORD_FALLBACK`, checked by the tests). Nothing is written
to disk. The ``desk_route_threshold`` setting, when set, replaces the threshold of whichever model
is used.

Department codes are the catalog's `Department.code`; a predicted code missing from the database
counts as no prediction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC
from sqlalchemy import select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from catalog.models import Department, Policy
from core import modelfiles, tabular
from core.config import Settings, get_settings
from core.errors import FieldError, ValidationFailed
from core.files import atomic_write
from core.tabular import ImportProblem, ImportReport
from core.text import normalize
from desk.models import Case, CaseEvent, EventKind
from desk.sla import KINDS

log = logging.getLogger(__name__)

Method = Literal["policy", "classifier", "keywords", "dispatch"]

MODEL_KIND = "desk-router/cv-selected"
FORMAT = 2
SUBDIR = "desk_router"


MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
DEMO_HISTORY = Path(__file__).resolve().parent / "demo_data" / "routing_history.csv"

CV_FOLDS = 5
SVM_C = 1.0
CALIBRATION_FOLDS = 3
TARGET_PRECISION = 0.90  # share of automatically routed cases that must land in the right department
MIN_EXAMPLES = 2 * CV_FOLDS
MIN_PER_CLASS = CALIBRATION_FOLDS  # the sigmoid calibration needs a few examples of every department
CANDIDATES = 3
# What `select_model` picks on the shipped history (text-only candidates): the model, its threshold
# for TARGET_PRECISION and whether the keyword table may route what it leaves (checked by the tests).
DEMO_SPEC = "char-svm+keywords"
DEMO_THRESHOLD = 0.675
DEMO_KEYWORD_FALLBACK = True
STAFF_ROLES = ("admin", "supervisor", "desk", "curator")

ALLOWED_TYPES = frozenset(
    {
        "sklearn.pipeline.Pipeline",
        "sklearn.feature_extraction.text.TfidfVectorizer",
        "sklearn.feature_extraction.text.TfidfTransformer",
        "sklearn.feature_extraction.text.CountVectorizer",
        "sklearn.pipeline.FeatureUnion",
        "sklearn.calibration.CalibratedClassifierCV",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.svm._classes.LinearSVC",
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.model_selection._split.StratifiedKFold",
        "builtins.slice",
        "builtins.tuple",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.float64",
        "numpy.int64",
        "numpy.int32",
        "numpy.str_",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
)


# ---------------------------------------------------------------- keyword rules

# A small table per department code of the demo site (Zhongshan); longer words weigh more.
# fmt: off
KEYWORDS: dict[str, tuple[str, ...]] = {
    "zs-kjj": ("高企", "高新技术企业", "科技型中小企业", "科小", "研发", "孵化", "创新券", "新型研发机构",
               "工程技术研究中心", "工程中心", "瞪羚", "科技局", "科技项目", "众创空间"),
    "zs-gxj": ("技改", "技术改造", "专精特新", "小巨人", "规上", "小升规", "工业企业", "数字化转型", "上云",
               "工业互联网", "绿色工厂", "有序用电", "错峰", "节能监察", "工信", "智能制造", "首台套"),
    "zs-swj": ("展会", "参展", "外贸", "出口信用保险", "跨境电商", "商贸", "小升限", "消费券", "外资", "进口",
               "直播电商", "商务局", "限上", "信保"),
    "zs-rsj": ("社保", "稳岗", "就业", "招工", "培训补贴", "职业技能", "失业保险", "劳动", "欠薪", "工资",
               "毕业生", "劳动合同", "工伤", "人社", "以工代训", "扩岗", "人才"),
    "zs-czj": ("财政", "拨付", "政府采购", "政采云", "专项资金", "财政局", "资金拨款"),
    "zs-scjgj": ("营业执照", "商标", "专利", "知识产权", "食品", "药品", "医疗器械", "质量", "计量", "认证",
                 "3c", "特种设备", "压力容器", "年报", "经营异常", "价格", "假冒", "市场监管", "名称登记", "变更登记"),
    "zs-jrj": ("贷款", "融资", "贴息", "上市", "银行", "担保", "转贷", "首贷", "信贷", "股改", "挂牌", "金融",
               "非法集资", "网贷"),
    "zs-tax": ("税", "发票", "开票", "退税", "加计扣除", "汇算", "纳税", "留抵", "专票", "税务"),
    "zs-nyncj": ("农业", "农村", "渔", "鱼塘", "养殖", "种植", "农资", "农药", "农机", "大棚", "农产品",
                 "合作社", "家庭农场", "龙头企业"),
    "zs-zjj": ("建筑", "工地", "施工", "房屋", "物业", "住房", "住建", "报建", "建设工程", "装修", "质监站",
               "安监站", "预售"),
    "zs-fgj": ("项目备案", "投资项目", "立项", "发改", "节能审查", "能耗", "重点项目", "可研", "备案证"),
    "zs-zsj": ("政务服务", "一网通办", "办事大厅", "窗口", "粤商通", "一件事", "政务", "数据", "电子证照", "预约"),
    "zs-wgl": ("文旅", "旅游", "酒店", "旅行社", "演出", "ktv", "剧本杀", "广电", "文化", "书店", "出版物",
               "网吧", "景区", "民宿"),
    "zs-cxgw": ("翠亨", "新区", "总部经济", "管委会"),
}
# fmt: on
KEYWORD_PRIOR = 1.0
KEYWORD_MIN_CONFIDENCE = 0.5


def keyword_scores(text: str) -> dict[str, float]:
    """Return, per department code, the summed weight of its keywords found in text (weight = 1 + 0.25 × extra chars)."""
    clean = normalize(text).lower()
    scores: dict[str, float] = {}
    for code, words in KEYWORDS.items():
        total = sum(1.0 + 0.25 * (len(w) - 2) if len(w) > 2 else 1.0 for w in words if w in clean)
        if total:
            scores[code] = total
    return scores


def keyword_route(text: str) -> tuple[list[tuple[str, float]], float]:
    """Return departments by keyword confidence (best first) and the best one's confidence.

    confidence = best / (best + runner-up + KEYWORD_PRIOR): one keyword alone gives 0.5, two 0.67.
    """
    scores = keyword_scores(text)
    if not scores:
        return [], 0.0
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    best = ranked[0][1]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    denominator = best + second + KEYWORD_PRIOR
    out = [(code, round(score / denominator, 4)) for code, score in ranked[:CANDIDATES]]
    return out, out[0][1]


# ---------------------------------------------------------------- decisions


@dataclass
class RoutingDecision:
    """Where a case goes, how that was decided, how sure, and the runner-up departments."""

    department_id: int | None
    department_code: str | None
    method: Method
    confidence: float
    candidates: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as a JSON-safe dict."""
        return {
            "department_id": self.department_id,
            "department_code": self.department_code,
            "method": self.method,
            "confidence": float(self.confidence),
            "candidates": [[c, float(s)] for c, s in self.candidates],
        }


def case_text(content: str, title: str = "") -> str:
    """Return the text routing reads: the title (when it adds something) and the content, normalised."""
    content, title = normalize(content), normalize(title)
    if title and title not in content:
        return f"{title} {content}"
    return content


# ---------------------------------------------------------------- the classifier

Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Spec:
    """A candidate model: which features it reads and which linear model it fits on them.

    features: ``chars`` (character n-gram TF-IDF), ``chars+keywords`` (the same plus the keyword
    table's words as an L2-normalised indicator block weighted `KEYWORD_BLOCK_WEIGHT`, so they sit
    on the TF-IDF block's scale instead of swamping it), ``e5`` (the matcher's sentence embeddings)
    or ``chars|e5`` (an ensemble: the mean of the two calibrated models' probabilities).
    """

    name: str
    features: str
    model: str  # "svm" or "logreg"; an ensemble's parts use "svm" on chars and "logreg" on e5

    @property
    def needs_vectors(self) -> bool:
        """Tell whether the candidate reads sentence embeddings."""
        return "e5" in self.features

    @property
    def needs_text(self) -> bool:
        """Tell whether the candidate reads character n-grams."""
        return "chars" in self.features


BASELINE = Spec("baseline", "chars", "svm-plain")
SPECS: tuple[Spec, ...] = (
    Spec("char-svm", "chars", "svm"),
    Spec("char-logreg", "chars", "logreg"),
    Spec("char-svm+keywords", "chars+keywords", "svm"),
    Spec("char-svm|char-logreg", "chars|chars", "ensemble"),
    Spec("e5-logreg", "e5", "logreg"),
    Spec("char-svm|e5-logreg", "chars|e5", "ensemble"),
)
SPEC_BY_NAME = {s.name: s for s in (BASELINE, *SPECS)}
KEYWORD_BLOCK_WEIGHT = 0.5
LOGREG_C = 20.0
E5_LOGREG_C = 10.0


def keyword_vocabulary() -> list[str]:
    """Return every word of the keyword table, lower-cased and sorted (the optional keyword feature block)."""
    return sorted({w.lower() for words in KEYWORDS.values() for w in words})


def _chars() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)


def _features(with_keywords: bool) -> Any:
    if not with_keywords:
        return _chars()
    vocabulary = keyword_vocabulary()
    keywords = TfidfVectorizer(
        analyzer="char",
        ngram_range=(1, max(len(w) for w in vocabulary)),
        vocabulary=vocabulary,
        binary=True,
        use_idf=False,
        norm="l2",
    )
    return FeatureUnion(
        [("chars", _chars()), ("keywords", keywords)],
        transformer_weights={"chars": 1.0, "keywords": KEYWORD_BLOCK_WEIGHT},
    )


def _calibrated(model: str, *, seed: int, c: float | None = None) -> CalibratedClassifierCV:
    if model == "svm":
        base: Any = LinearSVC(C=SVM_C, class_weight="balanced", random_state=seed)
    else:
        base = LogisticRegression(C=c or LOGREG_C, class_weight="balanced", max_iter=3000)
    # The default ensemble (one calibrated model per calibration fold, averaged): fitting one model on
    # everything (ensemble=False) gained no macro-F1 on the shipped history and made a content-free
    # "你好，请尽快联系我" 0.73 sure of one department instead of 0.50.
    return CalibratedClassifierCV(base, method="sigmoid", cv=CALIBRATION_FOLDS)


def baseline_pipeline(*, seed: int = 0) -> Pipeline:
    """Return the plain baseline every model must beat: char n-gram TF-IDF + LinearSVC, balanced classes."""
    return Pipeline([("features", _chars()), ("clf", LinearSVC(C=1.0, class_weight="balanced", random_state=seed))])


def make_pipeline(*, seed: int = 0, spec: Spec | None = None) -> Pipeline:
    """Return the untrained text pipeline of a candidate (its character part for an ensemble)."""
    spec = spec or SPEC_BY_NAME[DEMO_SPEC]
    if spec.model == "svm-plain":
        return baseline_pipeline(seed=seed)
    model = "svm" if spec.model == "ensemble" else spec.model
    return Pipeline([("features", _features("keywords" in spec.features)), ("clf", _calibrated(model, seed=seed))])


def _one_vs_rest(calibrated: CalibratedClassifierCV, features: Any) -> np.ndarray:
    """Return the calibrated one-vs-rest probability of every class (rows need not sum to 1)."""
    out = np.zeros((features.shape[0], len(calibrated.classes_)))
    for member in calibrated.calibrated_classifiers_:
        scores = np.asarray(member.estimator.decision_function(features), dtype=float)
        if scores.ndim == 1:  # two classes: one calibrator, for the second class
            positive = member.calibrators[0].predict(scores)
            out += np.column_stack([1.0 - positive, positive])
            continue
        out += np.column_stack([c.predict(scores[:, k]) for k, c in enumerate(member.calibrators)])
    return out / len(calibrated.calibrated_classifiers_)


class Model:
    """A fitted candidate: a text pipeline, a classifier on sentence embeddings, or the mean of two."""

    def __init__(self, spec: Spec, parts: list[Any], classes: Sequence[str]) -> None:
        self.spec = spec
        self.parts = parts  # (kind, estimator): kind "text" reads texts, "vectors" reads embeddings
        self.classes = list(classes)

    @property
    def needs_vectors(self) -> bool:
        """Tell whether predicting needs sentence embeddings."""
        return any(kind == "vectors" for kind, _ in self.parts)

    def predict_proba(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """Return each department's calibrated one-vs-rest probability, columns in `classes` order.

        The mean over the parts, not renormalised to sum to 1: each one-vs-rest probability says how
        likely that department is right on its own, while renormalising lifts the least unlikely of
        many unlikely departments when a text says little.
        """
        # No threadpool_limits here: it inspects the loaded libraries on every call, which cost more
        # than the prediction itself under concurrent intake (the 200-submission load test timed out).
        total = np.zeros((len(texts), len(self.classes)))
        for kind, estimator in self.parts:
            if kind == "vectors" and vectors is None:
                raise ValueError("this model needs sentence embeddings")
            if kind == "text":
                features, calibrated = estimator[:-1].transform(list(texts)), estimator[-1]
            else:
                features, calibrated = vectors, estimator
            probs = _one_vs_rest(calibrated, features)
            index = [self.classes.index(str(c)) for c in calibrated.classes_]
            total[:, index] += probs
        return total / len(self.parts)

    def decide(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> np.ndarray:
        """Return the predicted class of every text."""
        if self.spec.model == "svm-plain":
            (_, estimator), *_ = self.parts
            with threadpool_limits(limits=1):
                return np.asarray(estimator.predict(list(texts)))
        return np.array(self.classes)[self.predict_proba(texts, vectors).argmax(axis=1)]


def fit_spec(
    spec: Spec, texts: Sequence[str], labels: Sequence[str], *, vectors: np.ndarray | None = None, seed: int = 0
) -> Model:
    """Fit a candidate on texts (and their embeddings when it reads them)."""
    classes = sorted({str(c) for c in labels})
    parts: list[Any] = []
    # One BLAS thread: the sigmoid calibration runs many tiny L-BFGS problems, and with a thread
    # pool each pays for waking it (a 168-case fit took 4.4 s with the default pool on a busy
    # 2-core machine, 0.4 s with one thread).
    with threadpool_limits(limits=1):
        if spec.needs_text:
            pipeline = make_pipeline(seed=seed, spec=spec)
            parts.append(("text", pipeline.fit(list(texts), list(labels))))
        if spec.features == "chars|chars":
            logreg = make_pipeline(seed=seed, spec=SPEC_BY_NAME["char-logreg"])
            parts.append(("text", logreg.fit(list(texts), list(labels))))
        if spec.needs_vectors:
            if vectors is None:
                raise ValueError(f"candidate {spec.name} needs sentence embeddings")
            clf = _calibrated("logreg", seed=seed, c=E5_LOGREG_C)
            parts.append(("vectors", clf.fit(vectors, list(labels))))
    return Model(spec, parts, classes)


class Router:
    """A trained routing model: department codes with probabilities for a text, and the auto-route threshold.

    A model that reads sentence embeddings carries a text-only fallback (the best text-only
    candidate, with its own held-out threshold) for callers without the matcher's embedder.
    """

    def __init__(
        self,
        model: Model,
        threshold: float,
        manifest: dict[str, Any],
        *,
        keyword_fallback: bool = True,
        text_only: tuple[Model, float] | None = None,
    ) -> None:
        self.model = model
        self.classes = list(model.classes)
        self.threshold = float(threshold)
        self.keyword_fallback = bool(keyword_fallback)
        self.text_only = text_only
        self.manifest = manifest

    @property
    def needs_vectors(self) -> bool:
        """Tell whether the model reads sentence embeddings (then routing needs the matcher's embedder)."""
        return self.model.needs_vectors

    def choose(self, encode: Encode | None) -> tuple[Model, float] | None:
        """Return the model usable with or without an embedder, and its threshold (None when none is)."""
        if not self.needs_vectors or encode is not None:
            return self.model, self.threshold
        return self.text_only

    def predict(self, text: str, *, limit: int = CANDIDATES, encode: Encode | None = None) -> list[tuple[str, float]]:
        """Return the most probable department codes for a text, best first ([] when it cannot be read)."""
        clean = normalize(text)
        chosen = self.choose(encode)
        if not clean or chosen is None:
            return []
        model = chosen[0]
        vectors = np.asarray(encode([clean]), dtype=np.float32) if model.needs_vectors and encode else None
        probs = model.predict_proba([clean], vectors)[0]
        order = np.argsort(-probs, kind="stable")[:limit]
        return [(model.classes[i], round(float(probs[i]), 4)) for i in order]

    def threshold_for(self, encode: Encode | None) -> float:
        """Return the auto-route threshold of the model `predict` uses with this encoder."""
        chosen = self.choose(encode)
        return chosen[1] if chosen is not None else 1.0


def data_hash(examples: Iterable[tuple[str, str]]) -> str:
    """Return the sha256 of the sorted (text, department) pairs."""
    canonical = sorted((normalize(t), d) for t, d in examples)
    return hashlib.sha256(json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def _check_examples(examples: Sequence[tuple[str, str]]) -> None:
    counts = Counter(d for _, d in examples)
    thin = sorted(d for d, n in counts.items() if n < MIN_PER_CLASS)
    errors = [
        FieldError("department", f"部门 {d} 只有 {counts[d]} 条样本，至少需要 {MIN_PER_CLASS} 条", "too_few_examples")
        for d in thin
    ]
    if len(examples) < MIN_EXAMPLES or len(counts) < 2 or errors:
        raise ValidationFailed(
            f"训练数据不足：需要至少 {MIN_EXAMPLES} 条样本、2 个部门、每个部门至少 {MIN_PER_CLASS} 条；"
            f"现有 {len(examples)} 条样本、{len(counts)} 个部门",
            code="desk.router_training_data_insufficient",
            errors=errors,
        )


def _prepare(examples: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Normalise, drop empty texts, keep one label per text (the last given wins), sort for determinism."""
    by_text: dict[str, str] = {}
    for text, dept in examples:
        clean = normalize(text)
        if clean and dept:
            by_text[clean] = dept
    return sorted(by_text.items())


def fit(examples: Sequence[tuple[str, str]], *, seed: int = 0, spec: str = "") -> Model:
    """Fit a text-only candidate (the demo's by default) on (text, department code) pairs."""
    chosen = SPEC_BY_NAME[spec or DEMO_SPEC]
    return fit_spec(chosen, [t for t, _ in examples], [d for _, d in examples], seed=seed)


def choose_threshold(top: np.ndarray, right: np.ndarray, target: float) -> tuple[float, bool]:
    """Return (threshold, reached): the lowest top probability at which routed cases are right ≥ target.

    With no case reaching the target (or no case at all) returns (1.0, False): the classifier then
    routes nothing.
    """
    values = sorted(set(np.round(top, 4).tolist()))
    for t in values:
        routed = top >= t
        if routed.any() and right[routed].mean() >= target:
            return float(t), True
    return 1.0, False


def _folds(labels: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    folds = min(n_splits, min(Counter(labels.tolist()).values()))
    if folds < 2:
        raise ValidationFailed("每个部门至少需要 2 条样本才能交叉验证", code="desk.router_training_data_insufficient")
    return list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def _scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "macro_f1": round(float(f1_score(labels, predicted, average="macro", zero_division=0)), 4),
        "accuracy": round(float(accuracy_score(labels, predicted)), 4),
    }


def out_of_fold(
    spec: Spec,
    texts: np.ndarray,
    labels: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    *,
    vectors: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Return out-of-fold predictions of a candidate, and its probabilities (None for the plain baseline)."""
    classes = sorted(set(labels.tolist()))
    predicted = np.empty(len(texts), dtype=object)
    probs = None if spec.model == "svm-plain" else np.zeros((len(texts), len(classes)))
    for train_rows, test_rows in folds:
        model = fit_spec(
            spec,
            texts[train_rows],
            labels[train_rows],
            vectors=vectors[train_rows] if vectors is not None else None,
            seed=seed,
        )
        test_vectors = vectors[test_rows] if vectors is not None else None
        if probs is None:
            predicted[test_rows] = model.decide(texts[test_rows], test_vectors)
            continue
        fold_probs = model.predict_proba(texts[test_rows], test_vectors)
        for j, code in enumerate(model.classes):
            probs[test_rows, classes.index(code)] = fold_probs[:, j]
    if probs is not None:
        predicted = np.array(classes)[probs.argmax(axis=1)]
    return predicted.astype(str), probs


def select_model(
    examples: Sequence[tuple[str, str]],
    *,
    encode: Encode | None = None,
    seed: int = 0,
    specs: Sequence[Spec] = SPECS,
    n_splits: int = CV_FOLDS,
    target: float = TARGET_PRECISION,
) -> dict[str, Any]:
    """Cross-validate the plain baseline and every candidate on the same folds; pick the best and its threshold.

    Every candidate is scored by its out-of-fold macro-F1 (each example predicted by a model that
    never saw it). Candidates reading sentence embeddings run only when `encode` is given. The
    winner's out-of-fold probabilities choose the auto-route threshold for `target` precision, and
    decide whether the keyword table may route what the model leaves (only when its own
    out-of-fold precision on those cases reaches the target).
    """
    texts = np.array([t for t, _ in examples], dtype=object)
    labels = np.array([d for _, d in examples])
    folds = _folds(labels, n_splits, seed)
    vectors = None
    if encode is not None and any(s.needs_vectors for s in specs):
        vectors = np.asarray(encode(list(texts)), dtype=np.float32)
    baseline_pred, _ = out_of_fold(BASELINE, texts, labels, folds, seed=seed)
    results: dict[str, dict[str, Any]] = {"baseline": _scores(labels, baseline_pred)}
    all_probs: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.needs_vectors and vectors is None:
            results[spec.name] = {"skipped": "no embedder"}
            continue
        predicted, probs = out_of_fold(spec, texts, labels, folds, vectors=vectors, seed=seed)
        results[spec.name] = _scores(labels, predicted)
        assert probs is not None
        all_probs[spec.name] = probs
    # The best macro-F1 wins; on a tie the earlier (simpler) candidate.
    winner = max(all_probs, key=lambda name: (results[name]["macro_f1"], -list(all_probs).index(name)))
    classes = sorted(set(labels.tolist()))

    def operating_point(name: str) -> tuple[np.ndarray, np.ndarray, float, bool]:
        probs = all_probs[name]
        right = np.array(classes)[probs.argmax(axis=1)] == labels
        top = probs.max(axis=1)
        return probs, right, *choose_threshold(top, right, target)

    probs, right, threshold, reached = operating_point(winner)
    top = probs.max(axis=1)
    routed = top >= threshold
    text_only = None
    if SPEC_BY_NAME[winner].needs_vectors:
        readable = [n for n in all_probs if not SPEC_BY_NAME[n].needs_vectors]
        fallback_name = max(readable, key=lambda name: (results[name]["macro_f1"], -readable.index(name)))
        _, fallback_right, fallback_threshold, _ = operating_point(fallback_name)
        fallback_routed = all_probs[fallback_name].max(axis=1) >= fallback_threshold
        text_only = {
            "selected": fallback_name,
            "threshold": fallback_threshold,
            "auto_routed_share": round(float(fallback_routed.mean()), 4),
            "auto_routed_precision": round(float(fallback_right[fallback_routed].mean()), 4)
            if fallback_routed.any()
            else None,
        }
    fallback = keyword_fallback_check(texts, labels, ~routed, target)
    n = len(texts)
    return {
        "cv_folds": len(folds),
        "candidates": results,
        "baseline_macro_f1": results["baseline"]["macro_f1"],
        "selected": winner,
        "beats_baseline": results[winner]["macro_f1"] >= results["baseline"]["macro_f1"],
        **results[winner],
        "top3_accuracy": round(
            float(np.mean([labels[i] in np.array(classes)[np.argsort(-probs[i])[:3]] for i in range(n)])), 4
        ),
        "threshold": threshold,
        "target_precision": target,
        "target_reached": reached,
        "auto_routed_share": round(float(routed.mean()), 4),
        "auto_routed_precision": round(float(right[routed].mean()), 4) if routed.any() else None,
        "keyword_fallback": fallback,
        "text_only": text_only,
        "per_department": {
            code: {"support": int((labels == code).sum()), "recall": round(float(right[labels == code].mean()), 4)}
            for code in classes
        },
    }


def keyword_fallback_check(texts: np.ndarray, labels: np.ndarray, left: np.ndarray, target: float) -> dict[str, Any]:
    """Measure the keyword rules on the cases the model leaves; they may route only at the target precision."""
    fired = right = 0
    for i in np.flatnonzero(left):
        ranked, confidence = keyword_route(str(texts[i]))
        if ranked and confidence >= KEYWORD_MIN_CONFIDENCE:
            fired += 1
            right += ranked[0][0] == labels[i]
    precision = round(right / fired, 4) if fired else None
    return {
        "fired": fired,
        "precision": precision,
        "used": bool(fired) and precision is not None and precision >= target,
    }


_versions = modelfiles.library_versions


class LosesToBaseline(ValidationFailed):
    """The best candidate's cross-validated macro-F1 is below the plain baseline's: nothing is installed."""

    metrics: dict[str, Any] = {}


def train(
    *,
    examples: Iterable[tuple[str, str]],
    models_dir: Path,
    seed: int = 0,
    sources: dict[str, int] | None = None,
    encode: Encode | None = None,
    specs: Sequence[Spec] = SPECS,
) -> dict[str, Any]:
    """Select a model by cross-validation, fit it on all examples, write model and manifest; return the manifest.

    Raises `LosesToBaseline` (with the cross-validation results in ``metrics``) and writes nothing
    when the best candidate loses to the plain baseline.
    """
    started = time.perf_counter()
    prepared = _prepare(examples)
    _check_examples(prepared)
    metrics = select_model(prepared, encode=encode, seed=seed, specs=specs)
    if not metrics["beats_baseline"]:
        refused = LosesToBaseline(
            f"最佳候选模型 {metrics['selected']} 的交叉验证 macro-F1 {metrics['macro_f1']} "
            f"低于基线 {metrics['baseline_macro_f1']}，未安装",
            code="desk.router_loses_to_baseline",
        )
        refused.metrics = metrics
        raise refused
    spec = SPEC_BY_NAME[metrics["selected"]]
    texts = [t for t, _ in prepared]
    vectors = np.asarray(encode(texts), dtype=np.float32) if spec.needs_vectors and encode else None
    labels = [d for _, d in prepared]
    model = fit_spec(spec, texts, labels, vectors=vectors, seed=seed)
    text_only = metrics["text_only"]
    fallback_parts = (
        fit_spec(SPEC_BY_NAME[text_only["selected"]], texts, labels, seed=seed).parts if text_only else None
    )
    hashed = data_hash(prepared)
    versions = _versions()
    bundle = {
        "format": FORMAT,
        "spec": spec.name,
        "parts": model.parts,
        "classes": model.classes,
        "threshold": metrics["threshold"],
        "keyword_fallback": metrics["keyword_fallback"]["used"],
        "text_only": {"spec": text_only["selected"], "threshold": text_only["threshold"]} if text_only else None,
        "text_only_parts": fallback_parts,
        "data_hash": hashed,
        "sklearn_version": versions["sklearn"],
    }
    blob = modelfiles.sio().dumps(bundle, compression=zipfile.ZIP_DEFLATED)
    manifest = {
        "kind": MODEL_KIND,
        "format": FORMAT,
        "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": versions,
        "data_hash": hashed,
        "n": len(prepared),
        "sources": sources or {},
        "seed": seed,
        "spec": spec.name,
        "needs_embeddings": model.needs_vectors,
        "classes": model.classes,
        "class_counts": dict(sorted(Counter(d for _, d in prepared).items())),
        "threshold": metrics["threshold"],
        "keyword_fallback": metrics["keyword_fallback"]["used"],
        "text_only": {"spec": text_only["selected"], "threshold": text_only["threshold"]} if text_only else None,
        "params": {
            "analyzer": "char_wb",
            "ngram_range": [1, 3],
            "sublinear_tf": True,
            "C_svm": SVM_C,
            "C_logreg": LOGREG_C,
            "keyword_block_weight": KEYWORD_BLOCK_WEIGHT,
            "class_weight": "balanced",
            "calibration": "sigmoid",
            "calibration_folds": CALIBRATION_FOLDS,
            "keyword_min_confidence": KEYWORD_MIN_CONFIDENCE,
        },
        "metrics": metrics,
        "training_seconds": round(time.perf_counter() - started, 2),
        "model_file": MODEL_FILE,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "model_bytes": len(blob),
    }
    directory = Path(models_dir) / SUBDIR
    atomic_write(directory / MODEL_FILE, blob)
    atomic_write(directory / MANIFEST_FILE, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
    _LOADED.pop(directory, None)
    log.info(
        "trained desk router %s on %d cases, %d departments: cv macro-F1 %.3f (baseline %.3f), threshold %s",
        spec.name,
        len(prepared),
        len(model.classes),
        metrics["macro_f1"],
        metrics["baseline_macro_f1"],
        metrics["threshold"],
    )
    return manifest


# ---------------------------------------------------------------- training data


TRAINING_COLUMNS = (
    tabular.text_column("内容", "content", "诉求内容"),
    tabular.text_column("部门", "department", "承办部门编码，如 zs-kjj"),
    tabular.Column(
        "类型",
        "kind",
        parse=tabular.choice_parser(
            {
                **{k: k for k in KINDS},
                "咨询": "consultation",
                "求助": "help",
                "投诉": "complaint",
                "举报": "report",
                "建议": "suggestion",
            },
            "诉求类型",
        ),
        format=lambda v: v or "",
        note="consultation/help/complaint/report/suggestion 或 咨询/求助/投诉/举报/建议，可空",
    ),
)


@dataclass
class TrainingFile:
    """Examples read from a training file, and the row-level report of what was refused."""

    examples: list[tuple[str, str]]
    kinds: list[str | None]
    report: ImportReport


def read_training_file(data: bytes, filename: str, *, known_codes: Iterable[str] | None = None) -> TrainingFile:
    """Read a CSV/XLSX of content, department[, kind]; bad rows are reported, not fatal."""
    table = tabular.read_table(data, filename)
    report = ImportReport(total=len(table.rows))
    matched, unknown = tabular.match_headers(TRAINING_COLUMNS, table.headers)
    for header in unknown:
        report.errors.append(
            ImportProblem(row=1, column=header, value=header, reason="无法识别的列名", code="unknown_column")
        )
    present = {col.key for col in matched.values()}
    for col in TRAINING_COLUMNS[:2]:
        if col.key not in present:
            report.errors.append(ImportProblem(row=1, column=col.header, reason="缺少必需的列", code="missing_column"))
    if report.errors:
        return TrainingFile([], [], report)
    header_of = {col.key: header for header, col in matched.items()}
    known = set(known_codes) if known_codes is not None else None
    examples: list[tuple[str, str]] = []
    kinds: list[str | None] = []
    for row in table.rows:
        content = normalize(row.cells.get(header_of["content"], ""))
        dept = row.cells.get(header_of["department"], "").strip()
        problems = []
        if not content:
            problems.append(
                ImportProblem(row=row.number, column=header_of["content"], value="", reason="内容为空", code="required")
            )
        if not dept:
            problems.append(
                ImportProblem(
                    row=row.number, column=header_of["department"], value="", reason="部门为空", code="required"
                )
            )
        elif known is not None and dept not in known:
            problems.append(
                ImportProblem(
                    row=row.number,
                    column=header_of["department"],
                    value=dept,
                    reason=f"部门编码 {dept} 不存在",
                    code="unknown_department",
                )
            )
        kind = None
        raw_kind = row.cells.get(header_of.get("kind", ""), "") if "kind" in header_of else ""
        if raw_kind:
            try:
                kind = TRAINING_COLUMNS[2].parse(raw_kind)
            except ValueError as exc:
                problems.append(
                    ImportProblem(
                        row=row.number, column=header_of["kind"], value=raw_kind, reason=str(exc), code="invalid_value"
                    )
                )
        if problems:
            report.failed += 1
            report.errors.extend(problems)
            continue
        examples.append((content, dept))
        kinds.append(kind)
        report.created += 1
    return TrainingFile(examples, kinds, report)


def reassignment_examples(*, db: Session) -> list[tuple[str, str]]:
    """Return (case text, department code) of cases whose department staff set by assigning or transferring.

    A case reassigned several times counts once, with the department of the last such event.
    """
    rows = db.execute(
        select(CaseEvent.case_id, CaseEvent.kind, CaseEvent.data, Department.code, Case.title, Case.content)
        .join(Case, Case.id == CaseEvent.case_id)
        .outerjoin(Department, Department.id == CaseEvent.department_id)
        .where(
            CaseEvent.kind.in_([EventKind.assigned.value, EventKind.transferred.value]),
            CaseEvent.actor_id.is_not(None),
            CaseEvent.actor_role.in_(STAFF_ROLES),
        )
        .order_by(CaseEvent.case_id, CaseEvent.at, CaseEvent.id)
    )
    last: dict[int, tuple[str, str]] = {}
    for case_id, kind, data, code, title, content in rows:
        # A transfer's event names the department that handed the case on; where it went is in its data.
        target = (data or {}).get("to") if str(kind) == EventKind.transferred.value else code
        if target:
            last[case_id] = (case_text(content or "", title or ""), str(target))
    return [last[k] for k in sorted(last)]


def demo_examples() -> list[tuple[str, str]]:
    """Return the labelled history the demo ships."""
    parsed = read_training_file(DEMO_HISTORY.read_bytes(), DEMO_HISTORY.name)
    return parsed.examples


def train_from_file(
    *, db: Session, data: bytes, filename: str, models_dir: Path, seed: int = 0, encode: Encode | None = None
) -> tuple[dict[str, Any] | None, ImportReport, int]:
    """Train on a file plus the staff's reassignments; return (manifest or None when refused, report, reassignments)."""
    codes = set(db.scalars(select(Department.code)))
    parsed = read_training_file(data, filename, known_codes=codes or None)
    if parsed.report.header_failed:
        return None, parsed.report, 0
    extra = reassignment_examples(db=db)
    manifest = train(
        examples=[*parsed.examples, *extra],
        models_dir=models_dir,
        seed=seed,
        sources={"file": len(parsed.examples), "reassignments": len(extra)},
        encode=encode,
    )
    parsed.report.written = True
    return manifest, parsed.report, len(extra)


# ---------------------------------------------------------------- loading


_Refused = modelfiles.Refused


_LOADED: dict[Path, tuple[tuple[int, int], Router | None]] = {}
_DEMO: dict[str, Router] = {}
_LOCK = threading.Lock()


_minor = modelfiles.minor


def load(models_dir: Path) -> Router | None:
    """Load the trained router if its files are present, consistent and safe; None (logged) otherwise."""
    directory = Path(models_dir) / SUBDIR
    model_path, manifest_path = directory / MODEL_FILE, directory / MANIFEST_FILE
    try:
        stamp = (model_path.stat().st_mtime_ns, manifest_path.stat().st_mtime_ns)
    except OSError:
        return None
    held = _LOADED.get(directory)
    if held is not None and held[0] == stamp:
        return held[1]
    router: Router | None = None
    try:
        router = _load(model_path, manifest_path)
    except _Refused as why:
        log.warning("desk router in %s not used: %s", directory, why)
    except Exception as exc:  # a bad file must switch the classifier off, never fail a submission
        log.warning("desk router in %s unreadable: %s: %s", directory, type(exc).__name__, exc)
    _LOADED[directory] = (stamp, router)
    return router


def _load(model_path: Path, manifest_path: Path) -> Router:
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("kind") != MODEL_KIND or manifest.get("format") != FORMAT:
        raise _Refused("manifest is not a desk router manifest of this format")
    stored = manifest.get("versions") or {}
    modelfiles.check_versions(stored)
    bundle = modelfiles.load_verified(model_path, manifest, ALLOWED_TYPES)
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT or not isinstance(bundle.get("parts"), list):
        raise _Refused("model file does not hold a router bundle")
    for key in ("data_hash", "classes", "threshold", "spec", "keyword_fallback", "text_only"):
        if bundle.get(key) != manifest.get(key):
            raise _Refused(f"{key} in the manifest differs from the model file")
    spec = SPEC_BY_NAME.get(str(bundle["spec"]))
    parts = bundle.get("parts")
    if spec is None or not isinstance(parts, list) or not parts:
        raise _Refused("model file does not hold a known candidate")
    threshold = float(bundle["threshold"])
    if not 0.0 <= threshold <= 1.0:
        raise _Refused(f"threshold {threshold} outside [0, 1]")
    model = Model(spec, [tuple(p) for p in parts], bundle["classes"])
    text_only = None
    if bundle["text_only"]:
        fallback_spec = SPEC_BY_NAME.get(str(bundle["text_only"]["spec"]))
        fallback_parts = bundle.get("text_only_parts")
        if fallback_spec is None or fallback_spec.needs_vectors or not isinstance(fallback_parts, list):
            raise _Refused("the text-only fallback in the model file is not usable")
        text_only = (
            Model(fallback_spec, [tuple(p) for p in fallback_parts], bundle["classes"]),
            float(bundle["text_only"]["threshold"]),
        )
    return Router(model, threshold, manifest, keyword_fallback=bool(bundle["keyword_fallback"]), text_only=text_only)


def demo_router() -> Router:
    """Return the router trained in memory on the shipped history (once per process)."""
    key = str(DEMO_HISTORY)
    with _LOCK:
        router = _DEMO.get(key)
        if router is None:
            examples = _prepare(demo_examples())
            model = fit(examples, spec=DEMO_SPEC)
            router = Router(
                model,
                DEMO_THRESHOLD,
                {
                    "kind": MODEL_KIND,
                    "source": "demo_history",
                    "spec": DEMO_SPEC,
                    "n": len(examples),
                    "data_hash": data_hash(examples),
                },
                keyword_fallback=DEMO_KEYWORD_FALLBACK,
            )
            _DEMO[key] = router
            log.info("desk router trained in memory on the demo history (%d cases)", len(examples))
        return router


def active_router(settings: Settings) -> Router:
    """Return the router on disk, or the one trained on the shipped history when there is none."""
    return load(Path(settings.models_dir)) or demo_router()


# ---------------------------------------------------------------- routing


def _departments(db: Session, codes: Iterable[str]) -> dict[str, int]:
    wanted = list(dict.fromkeys(codes))
    if not wanted:
        return {}
    return dict(db.execute(select(Department.code, Department.id).where(Department.code.in_(wanted))).tuples().all())


def route_case(
    *,
    db: Session,
    content: str,
    title: str = "",
    related_policy_id: int | None = None,
    settings: Settings | None = None,
    encode: Encode | None = None,
) -> RoutingDecision:
    """Decide the department of a case: related policy, classifier, keywords, else the central dispatch queue."""
    settings = settings or get_settings()
    if related_policy_id is not None:
        row = db.execute(
            select(Policy.handling_department_id, Policy.issuing_department_id).where(Policy.id == related_policy_id)
        ).first()
        dept_id = (row[0] or row[1]) if row is not None else None
        if dept_id is not None:
            code = db.scalar(select(Department.code).where(Department.id == dept_id))
            return RoutingDecision(dept_id, code, "policy", 1.0, [(code, 1.0)] if code else [])

    text = case_text(content, title)
    router = active_router(settings)
    predicted = router.predict(text, encode=encode) if text else []
    ranked, keyword_confidence = keyword_route(text) if router.keyword_fallback else ([], 0.0)
    ids = _departments(db, [c for c, _ in predicted] + [c for c, _ in ranked])
    predicted = [(c, p) for c, p in predicted if c in ids]
    ranked = [(c, s) for c, s in ranked if c in ids]

    # One threshold, chosen on held-out folds for the target precision, whatever words the text holds.
    threshold = (
        float(settings.desk_route_threshold)
        if settings.desk_route_threshold is not None
        else router.threshold_for(encode)
    )
    if predicted and predicted[0][1] >= threshold:
        code, probability = predicted[0]
        return RoutingDecision(ids[code], code, "classifier", probability, predicted)
    if ranked and ranked[0][1] >= KEYWORD_MIN_CONFIDENCE:
        code, confidence = ranked[0]
        return RoutingDecision(ids[code], code, "keywords", confidence, ranked)
    best = max([p for _, p in predicted[:1]] + [keyword_confidence if ranked else 0.0])
    return RoutingDecision(None, None, "dispatch", round(float(best), 4), predicted or ranked)
