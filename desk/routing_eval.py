"""Evaluate routing on any labelled file a city supplies, with the plain baseline in the same run.

`huiqi eval routing FILE [--train TRAIN]` reads a CSV/XLSX of question and expected department
(headers ``question``/``问题``/``content``/``内容`` and ``department``/``部门``/
``expected_department``/``期望部门``). With ``--train`` the product's model is selected and fitted
on TRAIN exactly as `huiqi desk train` does (`routing.select_model`: cross-validated choice among
the candidates, threshold for the target precision on held-out folds) and measured on FILE; the
plain baseline (char n-gram TF-IDF + LinearSVC, balanced classes) is fitted on TRAIN too. Without
it, FILE is split into stratified folds and each fold is predicted by models fitted on the others
(the whole selection repeated inside every fold, so no figure is measured on data that chose it).

Figures: macro-F1 and accuracy of the top department; the auto-route share (cases whose top
probability reaches the chosen threshold) and the precision of those; the same two figures of the
whole chain as `route_case` runs it (model, then the keyword table where the training folds allowed
it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from core import tabular
from core.errors import ValidationFailed
from core.text import normalize
from desk import routing

QUESTION_HEADERS = ("question", "问题", "content", "内容", "诉求内容")
DEPARTMENT_HEADERS = ("department", "部门", "expected_department", "期望部门", "承办部门")
OUTER_FOLDS = 5
INNER_FOLDS = 3


def read_labelled(path: Path) -> list[tuple[str, str]]:
    """Read (question, department) pairs from a CSV/XLSX; rows missing either are skipped."""
    table = tabular.read_table(Path(path).read_bytes(), Path(path).name)
    keys = {tabular.header_key(h): h for h in table.headers}

    def find(names: Sequence[str], what: str) -> str:
        for name in names:
            if tabular.header_key(name) in keys:
                return keys[tabular.header_key(name)]
        raise ValidationFailed(f"评测文件缺少{what}列（可用表头：{'、'.join(names)}）", code="desk.eval_missing_column")

    question, department = find(QUESTION_HEADERS, "问题"), find(DEPARTMENT_HEADERS, "部门")
    out = []
    for row in table.rows:
        text, dept = normalize(row.cells.get(question, "")), row.cells.get(department, "").strip()
        if text and dept:
            out.append((text, dept))
    return out


def _fit_product(
    train: Sequence[tuple[str, str]], *, encode: routing.Encode | None, seed: int, n_splits: int
) -> tuple[routing.Model, float, bool, str]:
    prepared = routing._prepare(train)
    metrics = routing.select_model(prepared, encode=encode, seed=seed, n_splits=n_splits)
    spec = routing.SPEC_BY_NAME[metrics["selected"]]
    texts = [t for t, _ in prepared]
    vectors = np.asarray(encode(texts), dtype=np.float32) if spec.needs_vectors and encode else None
    model = routing.fit_spec(spec, texts, [d for _, d in prepared], vectors=vectors, seed=seed)
    return model, float(metrics["threshold"]), bool(metrics["keyword_fallback"]["used"]), spec.name


def _predict(
    train: Sequence[tuple[str, str]],
    test: Sequence[tuple[str, str]],
    *,
    encode: routing.Encode | None,
    seed: int,
    n_splits: int,
) -> dict[str, Any]:
    """Fit product and baseline on train; return their predictions on test."""
    texts = [normalize(t) for t, _ in test]
    model, threshold, fallback, name = _fit_product(train, encode=encode, seed=seed, n_splits=n_splits)
    vectors = np.asarray(encode(texts), dtype=np.float32) if model.needs_vectors and encode else None
    probs = model.predict_proba(texts, vectors)
    predicted = np.array(model.classes)[probs.argmax(axis=1)]
    top = probs.max(axis=1)
    routed = top >= threshold
    chain = [str(p) if r else None for p, r in zip(predicted, routed, strict=True)]
    if fallback:
        for i, text in enumerate(texts):
            if chain[i] is None:
                ranked, confidence = routing.keyword_route(text)
                if ranked and confidence >= routing.KEYWORD_MIN_CONFIDENCE:
                    chain[i] = ranked[0][0]
    prepared = routing._prepare(train)
    baseline = routing.fit_spec(routing.BASELINE, [t for t, _ in prepared], [d for _, d in prepared], seed=seed)
    return {
        "predicted": predicted.tolist(),
        "routed": routed.tolist(),
        "chain": chain,
        "baseline": baseline.decide(texts).tolist(),
        "selected": name,
        "threshold": threshold,
    }


def evaluate_routing(
    test: Sequence[tuple[str, str]],
    *,
    train: Sequence[tuple[str, str]] | None = None,
    encode: routing.Encode | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure the product's routing and the plain baseline on labelled cases (see the module docstring)."""
    labels = np.array([d for _, d in test])
    if train is not None:
        runs = [(np.arange(len(test)), _predict(train, test, encode=encode, seed=seed, n_splits=routing.CV_FOLDS))]
        mode = "train/test"
    else:
        folds = min(OUTER_FOLDS, min(Counter(labels.tolist()).values()))
        if folds < 2:
            raise ValidationFailed("每个部门至少需要 2 条样本才能交叉验证", code="desk.eval_too_few_examples")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        runs = []
        for train_rows, test_rows in splitter.split(np.zeros(len(labels)), labels):
            fold_train = [test[i] for i in train_rows]
            fold_test = [test[i] for i in test_rows]
            runs.append((test_rows, _predict(fold_train, fold_test, encode=encode, seed=seed, n_splits=INNER_FOLDS)))
        mode = f"{folds}-fold cross-validation"
    n = len(test)
    predicted = np.empty(n, dtype=object)
    baseline = np.empty(n, dtype=object)
    routed = np.zeros(n, dtype=bool)
    chain = np.empty(n, dtype=object)
    selected: list[str] = []
    thresholds: list[float] = []
    for rows, run in runs:
        predicted[rows] = run["predicted"]
        baseline[rows] = run["baseline"]
        routed[rows] = run["routed"]
        chain[rows] = run["chain"]
        selected.append(run["selected"])
        thresholds.append(run["threshold"])
    right = predicted == labels
    chain_routed = np.array([c is not None for c in chain])
    chain_right = np.array([c == y for c, y in zip(chain, labels, strict=True)])
    return {
        "mode": mode,
        "n": n,
        "departments": len(set(labels.tolist())),
        "selected": dict(Counter(selected)),
        "thresholds": thresholds,
        "product": {
            "macro_f1": round(float(f1_score(labels, predicted.astype(str), average="macro", zero_division=0)), 4),
            "accuracy": round(float(accuracy_score(labels, predicted.astype(str))), 4),
            "auto_routed_share": round(float(routed.mean()), 4),
            "auto_routed_precision": round(float(right[routed].mean()), 4) if routed.any() else None,
            "chain_routed_share": round(float(chain_routed.mean()), 4),
            "chain_precision": round(float(chain_right[chain_routed].mean()), 4) if chain_routed.any() else None,
        },
        "baseline": {
            "name": "char TF-IDF + LinearSVC (balanced)",
            "macro_f1": round(float(f1_score(labels, baseline.astype(str), average="macro", zero_division=0)), 4),
            "accuracy": round(float(accuracy_score(labels, baseline.astype(str))), 4),
        },
    }


def format_routing_report(result: dict[str, Any]) -> str:
    """Return the routing evaluation as lines of text."""
    p, b = result["product"], result["baseline"]
    return "\n".join(
        [
            f"分拨评估（{result['mode']}）：{result['n']} 条，{result['departments']} 个部门；"
            f"选中模型 {result['selected']}，阈值 {result['thresholds']}",
            f"{'':<28}{'macro-F1':>10}{'准确率':>8}{'自动分拨占比':>10}{'自动分拨准确率':>10}",
            f"{'本系统（模型）':<28}{p['macro_f1']:>10}{p['accuracy']:>10}{p['auto_routed_share']:>12}"
            f"{p['auto_routed_precision'] if p['auto_routed_precision'] is not None else '-':>14}",
            f"{'本系统（模型+关键词）':<28}{'':>10}{'':>10}{p['chain_routed_share']:>12}"
            f"{p['chain_precision'] if p['chain_precision'] is not None else '-':>14}",
            f"{'基线 ' + b['name']:<28}{b['macro_f1']:>10}{b['accuracy']:>10}",
        ]
    )
