"""Evaluate instant answers on any labelled file a city supplies, with a plain retrieval baseline in the same run.

`huiqi eval answers FILE` reads a CSV/XLSX of questions and the policy that answers each (headers
``question``/``问题`` and ``policy``/``政策``/``expected_policy``/``期望政策``: the policy's title or
document number; empty = the knowledge base cannot answer it; an active FAQ entry naming that policy
as related counts as right too). Optional columns: ``split`` (``tune`` / ``test``) and ``evidence``
(a phrase of the clause that answers; the answer's quoted passage should contain it).

With ``--catalog`` (and ``--faq``) the run builds a private database from JSON files (held-out sets
such as tests/data/answers_policies.json); otherwise it uses the knowledge base of the database in use.

How it is measured (no figure on the test split is ever used to choose anything):

- **product**: the Platt calibration and its threshold (target precision 0.9) are fitted on the
  ``tune`` rows (`desk.evaluation.calibrate` over the raw scores of `desk.answer.retrieve`), written
  as a manifest in a private models directory, and every ``test`` question is then answered by
  `desk.answer.answer_question` — the function POST /api/v1/desk/cases calls for its instant answer;
- **baseline**: character 1–3-gram TF-IDF retrieval over the same passages (`desk.answer.split_passages`
  with the title in front, plus each policy's title and summary); the top passage's policy is the
  answer and its cosine the confidence; its threshold is chosen on ``tune`` by the product's rule (the
  cosine answering the most questions right at the same target precision, of equal ones the highest);
- per system on ``test``: **precision** (right answers ÷ answers given), **coverage** (right answers ÷
  answerable questions), **top-1** (answerable questions whose first citation is right, whatever the
  confidence), **false answers** (unanswerable questions answered ÷ unanswerable) and, where
  ``evidence`` is given, **passage hits** (right answers whose quoted passage contains it).

Without a ``split`` column every row is both tuned and measured on (the report says so), and the
half-and-half held-out check of `desk.evaluation.held_out` is reported beside it.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Policy, PolicyStatus
from core import tabular
from core.config import Settings
from core.errors import ValidationFailed
from core.text import normalize
from desk import answer as answer_mod
from desk import evaluation
from desk.models import FaqEntry
from matcher import engine as matcher_engine

QUESTION_HEADERS = ("question", "问题", "content", "内容")
POLICY_HEADERS = ("policy", "政策", "expected_policy", "期望政策", "answer_policy")
SPLIT_HEADERS = ("split", "划分")
EVIDENCE_HEADERS = ("evidence", "依据")
TUNE, TEST = "tune", "test"


def read_labelled(path: Path, *, db: Session) -> list[dict[str, Any]]:
    """Read the questions as `desk.evaluation` questions; a policy named by doc number becomes its title."""
    table = tabular.read_table(Path(path).read_bytes(), Path(path).name)
    keys = {tabular.header_key(h): h for h in table.headers}

    def find(names: Sequence[str], what: str, *, required: bool = True) -> str | None:
        for name in names:
            if tabular.header_key(name) in keys:
                return keys[tabular.header_key(name)]
        if not required:
            return None
        raise ValidationFailed(f"评测文件缺少{what}列（可用表头：{'、'.join(names)}）", code="desk.eval_missing_column")

    question_col, policy_col = find(QUESTION_HEADERS, "问题"), find(POLICY_HEADERS, "政策")
    split_col, evidence_col = (
        find(SPLIT_HEADERS, "划分", required=False),
        find(EVIDENCE_HEADERS, "依据", required=False),
    )
    by_number = {normalize(n): t for n, t in db.execute(select(Policy.doc_number, Policy.title)).all() if n is not None}
    # An FAQ entry that names the expected policy as related says the same thing: it counts as right.
    faq_for: dict[str, list[str]] = {}
    for code, related in db.execute(select(FaqEntry.code, FaqEntry.related_policies).where(FaqEntry.active.is_(True))):
        for name in related or []:
            faq_for.setdefault(normalize(name), []).append(code)
    out = []
    for row in table.rows:
        question = normalize(row.cells.get(str(question_col), ""))
        if not question:
            continue
        policy = normalize(row.cells.get(str(policy_col), ""))
        title = by_number.get(policy, policy)
        split = (row.cells.get(split_col, "") if split_col else "").strip().lower()
        if split and split not in (TUNE, TEST):
            raise ValidationFailed(
                f"评测文件第 {row.number} 行：划分（split）只能是 tune 或 test", code="desk.eval_bad_split"
            )
        out.append(
            {
                "id": f"row-{row.number}",
                "question": question,
                "answerable": bool(title),
                "answer_sources": [f"policy:{title}", *(f"faq:{c}" for c in faq_for.get(title, []))] if title else [],
                "style": "plain",
                "split": split,
                "evidence": normalize(row.cells.get(evidence_col, "")) if evidence_col else "",
            }
        )
    return out


# ---------------------------------------------------------------- the baseline


class TfidfPassages:
    """Char 1–3-gram TF-IDF over every published policy's passages (title in front), title and summary."""

    def __init__(self, db: Session) -> None:
        rows = db.execute(
            select(Policy.title, Policy.summary, Policy.full_text)
            .where(Policy.status == PolicyStatus.published)
            .order_by(Policy.id)
        ).all()
        self.owner: list[str] = []
        texts: list[str] = []
        for title, summary, full_text in rows:
            key = normalize(title)
            for piece in [" ".join(p for p in (title, summary) if p), *answer_mod.split_passages(full_text)]:
                self.owner.append(key)
                texts.append(normalize(f"{title} {piece}"))
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform(texts) if texts else None

    def top(self, question: str) -> tuple[str | None, float]:
        """Return (normalised title of the policy owning the best passage, its cosine)."""
        if self.matrix is None:
            return None, 0.0
        scores = (self.matrix @ self.vectorizer.transform([normalize(question)]).T).toarray().ravel()
        best = int(scores.argmax())
        return self.owner[best], float(scores[best])


def baseline_rows(db: Session, questions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Return one row per question for the TF-IDF baseline, its cosine as the raw score."""
    index = TfidfPassages(db)
    rows = []
    for q in questions:
        title, score = index.top(q["question"])
        expected = {evaluation.source_key(s) for s in q.get("answer_sources") or []}
        got = f"policy:{title}" if title else None
        rows.append(
            {
                "question": q["question"],
                "answerable": bool(q["answerable"]),
                "right": bool(q["answerable"]) and got in expected,
                "got": got,
                "raw": round(score, 6),
            }
        )
    return rows


def threshold_for(rows: Sequence[Mapping[str, Any]], target: float) -> float:
    """Return the baseline's threshold by the product's rule (`desk.evaluation.choose_threshold`) on raw scores:
    the score answering the most questions right at precision ≥ target, of equal ones the highest (∞ if none)."""
    raw = np.array([r["raw"] if r["raw"] is not None else -np.inf for r in rows], dtype=float)
    right = np.array([r["right"] for r in rows], dtype=bool)
    best: tuple[int, float] | None = None
    for value in sorted({float(v) for v in raw if np.isfinite(v)}):
        given = raw >= value
        if given.any() and right[given].mean() >= target:
            key = (int(right[given].sum()), value)
            if best is None or key > best:
                best = key
    return best[1] if best is not None else float("inf")


def figures(judged: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Return precision, coverage, top-1, false answers and passage hits of judged rows (given, right, …)."""
    answerable = [r for r in judged if r["answerable"]]
    unanswerable = [r for r in judged if not r["answerable"]]
    given = [r for r in judged if r["given"]]
    right = [r for r in given if r["right"]]
    with_evidence = [r for r in right if r.get("evidence")]

    def share(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "n": len(judged),
        "answerable": len(answerable),
        "answered": len(given),
        "right": len(right),
        "precision": share(len(right), len(given)),
        "coverage": share(len(right), len(answerable)),
        "top1": share(sum(r["right"] for r in answerable), len(answerable)),
        "false_answers": share(sum(r["given"] for r in unanswerable), len(unanswerable)),
        "passage_hits": share(sum(bool(r.get("passage_hit")) for r in with_evidence), len(with_evidence)),
    }


# ---------------------------------------------------------------- the whole run


def _split(questions: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int], bool]:
    tune = [i for i, q in enumerate(questions) if q.get("split") == TUNE]
    test = [i for i, q in enumerate(questions) if q.get("split") == TEST]
    if tune and test:
        return tune, test, True
    every = list(range(len(questions)))
    return every, every, False


def product_answers(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    settings: Settings,
    questions: Sequence[Mapping[str, Any]],
    calibration: Mapping[str, Any],
    today: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Answer every question through `answer_question` under a calibration; return judged rows."""
    faq_codes = dict(db.execute(select(FaqEntry.id, FaqEntry.code)).tuples().all())
    out = []
    with tempfile.TemporaryDirectory(prefix="huiqi-eval-answers-") as tmp:
        manifest = {
            "kind": evaluation.MANIFEST_KIND,
            "format": evaluation.FORMAT,
            "scoring_version": answer_mod.SCORING_VERSION,
            "threshold": calibration["threshold"],
            "slope": calibration["slope"],
            "intercept": calibration["intercept"],
            "faq_threshold": calibration.get("faq_threshold", answer_mod.FAQ_QUESTION_THRESHOLD),
        }
        path = answer_mod.manifest_path(tmp)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(manifest), encoding="utf-8")
        scoped = settings.model_copy(update={"models_dir": Path(tmp)})
        for q in questions:
            answer = answer_mod.answer_question(
                db=db, matcher=matcher, question=q["question"], settings=scoped, today=today
            )
            first = answer.citations[0] if answer.citations else None
            got = None
            if first is not None:
                got = (
                    f"policy:{normalize(first.title)}" if first.source == "policy" else f"faq:{faq_codes.get(first.id)}"
                )
            expected = {evaluation.source_key(s) for s in q.get("answer_sources") or []}
            right = bool(q["answerable"]) and got in expected
            evidence = q.get("evidence") or ""
            out.append(
                {
                    "question": q["question"],
                    "answerable": bool(q["answerable"]),
                    "expected": sorted(expected),
                    "got": got,
                    "right": right,
                    "given": bool(answer.confident),
                    "confidence": answer.confidence,
                    "evidence": evidence,
                    "passage_hit": bool(evidence) and right and evidence in normalize(answer.text),
                }
            )
    return out


FAQ_THRESHOLDS = (0.88, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 1.01)  # 1.01: an FAQ entry never answers alone
FOLDS = 5


def _folds(indices: Sequence[int], questions: Sequence[Mapping[str, Any]], k: int) -> list[list[int]]:
    """Split indices in k folds, stratified by answerable, in a fixed order (deterministic)."""
    folds: list[list[int]] = [[] for _ in range(k)]
    ordered = [i for i in indices if questions[i]["answerable"]] + [
        i for i in indices if not questions[i]["answerable"]
    ]
    for n, i in enumerate(ordered):
        folds[n % k].append(i)
    return folds


def choose_faq_threshold(
    *,
    db: Session,
    questions: Sequence[Mapping[str, Any]],
    retrievals: Sequence[answer_mod.Retrieval],
    tune_idx: Sequence[int],
    target: float,
) -> dict[str, Any]:
    """Cross-validate the FAQ question–question threshold on the tune rows (k folds).

    For every candidate threshold the calibration is fitted on k−1 folds and measured on the one left
    out; the threshold kept gives the highest pooled coverage with pooled precision ≥ target (ties: the
    stricter threshold). 1.01 means an FAQ entry only ever backs a policy answer.
    """
    tune_questions = [questions[i] for i in tune_idx]
    tune_found = [retrievals[i] for i in tune_idx]
    folds = _folds(range(len(tune_questions)), tune_questions, FOLDS)
    table = []
    for threshold in FAQ_THRESHOLDS:
        rows = evaluation.judge(db=db, questions=tune_questions, retrievals=tune_found, faq_threshold=threshold)
        judged: list[dict[str, Any]] = []
        for fold in folds:
            fit = [rows[i] for i in range(len(rows)) if i not in set(fold)]
            cal = evaluation.calibrate(fit, target)
            c = answer_mod.Calibration(threshold=cal["threshold"], slope=cal["slope"], intercept=cal["intercept"])
            for i in fold:
                r = rows[i]
                judged.append({**r, "given": r["raw"] is not None and round(c.confidence(r["raw"]), 4) >= c.threshold})
        given = [r for r in judged if r["given"]]
        right = sum(r["right"] for r in given)
        answerable = sum(r["answerable"] for r in judged)
        table.append(
            {
                "threshold": threshold,
                "precision": round(right / len(given), 4) if given else None,
                "coverage": round(right / answerable, 4) if answerable else None,
            }
        )
    ok = [t for t in table if t["precision"] is not None and t["precision"] >= target] or table
    best = max(ok, key=lambda t: (t["coverage"] or 0.0, t["threshold"]))
    return {"threshold": best["threshold"], "folds": FOLDS, "table": table}


def evaluate_answers(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    settings: Settings,
    questions: Sequence[dict[str, Any]],
    target: float = evaluation.TARGET_PRECISION,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """Tune on the ``tune`` rows, measure product and baseline on the ``test`` rows; see the module docstring."""
    if not questions:
        raise ValidationFailed("评测文件没有问题", code="desk.eval_empty")
    tune_idx, test_idx, held = _split(questions)
    has_faq = db.scalar(select(FaqEntry.id).where(FaqEntry.active.is_(True)).limit(1)) is not None
    found = evaluation.retrieve_all(db=db, matcher=matcher, questions=questions)
    faq = (
        choose_faq_threshold(db=db, questions=questions, retrievals=found, tune_idx=tune_idx, target=target)
        if has_faq
        else None
    )
    faq_threshold = faq["threshold"] if faq else answer_mod.FAQ_QUESTION_THRESHOLD
    rows = evaluation.judge(db=db, questions=questions, retrievals=found, faq_threshold=faq_threshold)
    calibration = {**evaluation.calibrate([rows[i] for i in tune_idx], target), "faq_threshold": faq_threshold}
    test_questions = [questions[i] for i in test_idx]
    product = product_answers(
        db=db, matcher=matcher, settings=settings, questions=test_questions, calibration=calibration, today=today
    )
    base = baseline_rows(db, questions)
    base_threshold = threshold_for([base[i] for i in tune_idx], target)
    base_test = [{**base[i], "given": base[i]["raw"] >= base_threshold, "evidence": ""} for i in test_idx]
    misses = [r for r in product if r["answerable"] and not r["right"]] + [
        r for r in product if not r["answerable"] and r["given"]
    ]
    misses.sort(key=lambda r: (not r["given"], -r["confidence"]))  # answered wrongly first, most confident first
    return {
        "n": len(questions),
        "held_out": held,
        "tune": len(tune_idx),
        "test": len(test_idx),
        "target_precision": target,
        "calibration": calibration,
        "faq_cv": faq,
        "product": figures(product),
        "baseline": {"name": "字符 TF-IDF 段落检索", "threshold": round(base_threshold, 4), **figures(base_test)},
        "half_check": None if held else evaluation.held_out(rows, target),
        "misses": [
            {"question": r["question"], "expected": r["expected"], "got": r["got"], "given": r["given"]} for r in misses
        ],
        "rows": product,
    }


def _f(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_answers_report(result: Mapping[str, Any], *, misses: int = 5) -> str:
    """Return the answers evaluation as lines of text."""
    cal = result["calibration"]
    where = (
        f"在 tune（{result['tune']} 题）上校准与定阈值，只在 test（{result['test']} 题）上测量"
        if result["held_out"]
        else f"文件没有 tune/test 划分：{result['n']} 题既用于校准也用于测量"
    )
    lines = [
        f"即时答复评估：{result['n']} 个问题；{where}",
        f"目标准确率 {result['target_precision']}；本系统阈值 {cal['threshold']}（slope {cal['slope']}，"
        f"intercept {cal['intercept']}）；基线阈值（余弦）{result['baseline']['threshold']}",
        f"{'系统':<22}{'准确率':>8}{'覆盖率':>8}{'Top-1':>8}{'误答不可答':>10}{'段落命中':>9}",
    ]
    for label, s in (
        ("本系统（answer_question）", result["product"]),
        (result["baseline"]["name"], result["baseline"]),
    ):
        lines.append(
            f"{label:<22}{_f(s['precision']):>8}{_f(s['coverage']):>8}{_f(s['top1']):>8}"
            f"{_f(s['false_answers']):>10}{_f(s['passage_hits']):>9}"
        )
    cv = result.get("faq_cv")
    if cv:
        cells = "；".join(f"{t['threshold']}: {_f(t['precision'])}/{_f(t['coverage'])}" for t in cv["table"])
        lines.append(
            f"常见问题问句阈值（tune 上 {cv['folds']} 折交叉验证，准确率/覆盖率）：{cells}；选用 {cv['threshold']}"
        )
    half = result.get("half_check")
    if half:
        lines.append(
            f"对半留出校准（{half['splits']} 次）：准确率 {half['precision']['mean']}，覆盖率 {half['coverage']['mean']}"
        )
    if result["misses"]:
        lines.append(f"最差的失败（前 {min(misses, len(result['misses']))} 个；先列答错的）：")
        for m in result["misses"][:misses]:
            state = "已作答" if m["given"] else "未作答"
            lines.append(
                f"  [{state}] {m['question']} → 期望 {'；'.join(m['expected']) or '（不可回答）'}，得到 {m['got']}"
            )
    return "\n".join(lines)
