"""Evaluate instant answers on any labelled file a city supplies, with a plain retrieval baseline in the same run.

`huiqi eval answers FILE` reads a CSV/XLSX of questions and the policy that answers each
(headers ``question``/``问题`` and ``policy``/``政策``/``expected_policy``/``期望政策``: the policy's
title or document number; empty = the knowledge base cannot answer it; an active FAQ entry naming
that policy as related counts as right too) and runs every question
through the product's answer retrieval (`desk.answer.retrieve`, the scoring `answer_question`
uses) against the knowledge base of the database in use.

Figures (definitions as in `desk.evaluation`):

- **Hit@1** — answerable questions whose top citation is the expected policy, whatever the confidence;
- **precision / coverage under the installed calibration** — what the service does today with the
  calibration in force (``models/desk_answer`` or the settings' threshold);
- **precision / coverage held out** — the calibration refitted on one half of the file and
  measured on the other, both ways, over several seeds: never measured on the rows it was fitted on;
- **baseline Hit@1** — character n-gram TF-IDF retrieval (``char_wb`` 1–3, sublinear) over every
  published policy's title, summary and full text, cosine-ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def read_labelled(path: Path, *, db: Session) -> list[dict[str, Any]]:
    """Read the questions as `desk.evaluation` questions; a policy named by doc number becomes its title."""
    table = tabular.read_table(Path(path).read_bytes(), Path(path).name)
    keys = {tabular.header_key(h): h for h in table.headers}

    def find(names: Sequence[str], what: str) -> str:
        for name in names:
            if tabular.header_key(name) in keys:
                return keys[tabular.header_key(name)]
        raise ValidationFailed(f"评测文件缺少{what}列（可用表头：{'、'.join(names)}）", code="desk.eval_missing_column")

    question_col, policy_col = find(QUESTION_HEADERS, "问题"), find(POLICY_HEADERS, "政策")
    by_number = {normalize(n): t for n, t in db.execute(select(Policy.doc_number, Policy.title)).all() if n is not None}
    # An FAQ entry that names the expected policy as related says the same thing: it counts as right.
    faq_for: dict[str, list[str]] = {}
    for code, related in db.execute(select(FaqEntry.code, FaqEntry.related_policies).where(FaqEntry.active.is_(True))):
        for name in related or []:
            faq_for.setdefault(normalize(name), []).append(code)
    out = []
    for row in table.rows:
        question = normalize(row.cells.get(question_col, ""))
        if not question:
            continue
        policy = normalize(row.cells.get(policy_col, ""))
        title = by_number.get(policy, policy)
        out.append(
            {
                "id": f"row-{row.number}",
                "question": question,
                "answerable": bool(title),
                "answer_sources": [f"policy:{title}", *(f"faq:{c}" for c in faq_for.get(title, []))] if title else [],
                "style": "plain",
            }
        )
    return out


def baseline_hits(db: Session, questions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return Hit@1 of char n-gram TF-IDF retrieval over published policies (title, summary, full text)."""
    rows = db.execute(
        select(Policy.title, Policy.summary, Policy.full_text).where(Policy.status == PolicyStatus.published)
    ).all()
    answerable = [q for q in questions if q["answerable"]]
    if not rows or not answerable:
        return {"hit1": None, "answerable": len(answerable)}
    titles = [normalize(t) for t, _, _ in rows]
    docs = [normalize(" ".join(p for p in r if p)) for r in rows]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    matrix = vectorizer.fit_transform(docs)
    queries = vectorizer.transform([q["question"] for q in answerable])
    best = np.asarray((queries @ matrix.T).toarray().argmax(axis=1)).ravel()
    hits = sum(
        f"policy:{titles[b]}" in {evaluation.source_key(s) for s in q["answer_sources"]}
        for b, q in zip(best, answerable, strict=True)
    )
    return {"hit1": round(hits / len(answerable), 4), "answerable": len(answerable)}


def evaluate_answers(
    *, db: Session, matcher: matcher_engine.Matcher, settings: Settings, questions: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """Run the questions through the product and the baseline; return the figures of the module docstring."""
    if not questions:
        raise ValidationFailed("评测文件没有问题", code="desk.eval_empty")
    rows = evaluation.run_questions(db=db, matcher=matcher, questions=questions)
    installed = answer_mod.load_calibration(settings)
    calibration = {"threshold": installed.threshold, "slope": installed.slope, "intercept": installed.intercept}
    figures = evaluation.measure(rows, calibration)
    held = evaluation.held_out(rows)
    misses = [r for r in rows if r["answerable"] and not r["right"]]
    return {
        "n": len(rows),
        "answerable": figures["answerable"],
        "hit1": figures["top1"],
        "installed": {**figures, "source": installed.source, "threshold": installed.threshold},
        "held_out": {"precision": held["precision"], "coverage": held["coverage"], "splits": held["splits"]},
        "baseline": {"name": "char TF-IDF retrieval", **baseline_hits(db, questions)},
        "misses": [{"question": r["question"], "expected": r["expected"], "got": r["got"]} for r in misses],
    }


def format_answers_report(result: dict[str, Any], *, misses: int = 5) -> str:
    """Return the answers evaluation as lines of text."""
    inst, held, base = result["installed"], result["held_out"], result["baseline"]
    lines = [
        f"即时答复评估：{result['n']} 个问题（可回答 {result['answerable']}）",
        f"本系统 Hit@1 {result['hit1']}；基线（{base['name']}）Hit@1 {base['hit1']}",
        f"当前校准（{inst['source']}，阈值 {inst['threshold']}）：准确率 {inst['precision']}，覆盖率 {inst['coverage']}，"
        f"答复 {inst['answered']} 个，其中误答不可回答问题占不可回答的 {inst['false_answers']}",
        f"留出校准（对半拟合、另一半测量，{held['splits']} 次）：准确率 均值 {held['precision']['mean']}"
        f"（{held['precision']['min']}–{held['precision']['max']}），覆盖率 均值 {held['coverage']['mean']}"
        f"（{held['coverage']['min']}–{held['coverage']['max']}）",
    ]
    if result["misses"]:
        lines.append(f"未命中（前 {misses} 个）：")
        lines.extend(f"  {m['question']} → 期望 {m['expected']}，得到 {m['got']}" for m in result["misses"][:misses])
    return "\n".join(lines)
