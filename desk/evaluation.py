"""Calibrate and evaluate instant answers on the team's labelled questions (tests/data/desk_eval.json).

Every question is run through the answer retrieval (`desk.answer.retrieve`, the same scoring
`answer_question` uses) against the knowledge base of the database in use — in tests and in the
demo, the demo policies and FAQ entries. A question is labelled with the sources that answer it
(``policy:<title>`` or ``faq:<code>``; any of them will do) or as unanswerable.

Definitions (every figure the report prints):

- an answer is *given* when its confidence reaches the threshold;
- it is *right* when its top citation is one of the labelled sources; an answer given to an
  unanswerable question is wrong;
- **precision** = right answers ÷ answers given;
- **coverage** = right answers ÷ answerable questions (the share of the questions the knowledge base
  can answer that are answered instantly, and correctly);
- **answer rate** = answers given ÷ all questions; **false answers** = unanswerable questions
  answered ÷ unanswerable questions; **top-1** = answerable questions whose top citation is right,
  whatever the confidence.

Calibration fits the logistic map from the raw score to a confidence (slope, intercept: a logistic
regression of "top citation is right" on the raw score) and picks the threshold: of the confidences
at which precision of the answers given reaches the target (0.9), the one giving the most right
answers — of equal ones the highest, so a wrong answer that brings no right one is refused — placed
halfway to the next lower confidence seen. It is written to ``<models_dir>/desk_answer/manifest.json``, which
`answer_question` reads.

Because those figures are measured on the questions the threshold was chosen on, the report adds a
held-out check: the questions are split in two halves (stratified by answerable, seeded), each half
is calibrated on the other, and precision and coverage are measured on the half that was not seen;
this is repeated over several seeds and the mean and range are reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Policy, PolicyStatus
from core.files import atomic_write
from core.text import normalize
from desk import answer as answer_mod
from desk.models import FaqEntry
from matcher import engine as matcher_engine

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EVAL_PATH = ROOT / "tests" / "data" / "desk_eval.json"
TARGET_PRECISION = 0.9
HELD_OUT_SEEDS = 10
MANIFEST_KIND = "desk-answer/calibration"
FORMAT = 1
STYLE_LABELS = {
    "plain": "直述 plain",
    "paraphrase": "改写 paraphrase",
    "traditional": "繁体 traditional",
    "abbreviation": "简称 abbreviation",
    "colloquial": "口语 colloquial",
}


def load_eval_set(path: Path | None = None) -> list[dict[str, Any]]:
    """Read the labelled questions: id, question, answer_sources, answerable, style."""
    data = json.loads(Path(path or DEFAULT_EVAL_PATH).read_text(encoding="utf-8"))
    questions = data["questions"] if isinstance(data, dict) else data
    for q in questions:
        if not q.get("question") or "answerable" not in q:
            raise ValueError(f"评测问题 {q.get('id')} 缺少 question 或 answerable")
        if q["answerable"] and not q.get("answer_sources"):
            raise ValueError(f"评测问题 {q.get('id')} 标为可回答，但没有标注来源")
    return questions


def data_hash(questions: Sequence[Mapping[str, Any]]) -> str:
    """Return the sha256 of the questions in canonical JSON."""
    canonical = json.dumps(list(questions), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def source_key(source: str) -> str:
    """Return a labelled source in comparable form: "policy:<normalised title>" or "faq:<code>"."""
    kind, _, name = source.partition(":")
    return f"{kind}:{normalize(name)}" if kind == "policy" else f"{kind}:{name.strip()}"


# ---------------------------------------------------------------- running the questions


def _known_sources(db: Session) -> set[str]:
    titles = db.scalars(select(Policy.title).where(Policy.status == PolicyStatus.published))
    codes = db.scalars(select(FaqEntry.code).where(FaqEntry.active.is_(True)))
    return {f"policy:{normalize(t)}" for t in titles} | {f"faq:{c}" for c in codes}


def retrieve_all(
    *, db: Session, matcher: matcher_engine.Matcher, questions: Sequence[Mapping[str, Any]]
) -> list[answer_mod.Retrieval]:
    """Retrieve for every question (re-rankable for another FAQ threshold with `desk.answer.rank`)."""
    # Embed all query texts in one batch first; retrieval then finds each one in the cache.
    matcher.encode(list(dict.fromkeys(answer_mod.expand_query(db, q["question"]) for q in questions)), "query")
    return [
        answer_mod.retrieve(db=db, matcher=matcher, question=q["question"], floor=matcher.settings.semantic_floor)
        for q in questions
    ]


def judge(
    *,
    db: Session,
    questions: Sequence[Mapping[str, Any]],
    retrievals: Sequence[answer_mod.Retrieval],
    faq_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Return one row per question: the raw score under the FAQ threshold and whether the top citation is right."""
    faq_codes = dict(db.execute(select(FaqEntry.id, FaqEntry.code)).tuples().all())
    threshold = answer_mod.FAQ_QUESTION_THRESHOLD if faq_threshold is None else faq_threshold
    rows = []
    for q, found in zip(questions, retrievals, strict=True):
        retrieval = answer_mod.rank(found, threshold)
        expected = {source_key(s) for s in q.get("answer_sources") or []}
        top = retrieval.candidates[0] if retrieval.candidates else None
        got = None
        if top is not None:
            got = f"policy:{normalize(top.title)}" if top.source == "policy" else f"faq:{faq_codes.get(top.id)}"
        rows.append(
            {
                "id": q.get("id"),
                "question": q["question"],
                "style": q.get("style", "plain"),
                "answerable": bool(q["answerable"]),
                "expected": sorted(expected),
                "got": got,
                "right": bool(q["answerable"]) and got in expected,
                "raw": None if retrieval.raw is None else round(float(retrieval.raw), 6),
            }
        )
    return rows


def run_questions(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    questions: Sequence[Mapping[str, Any]],
    faq_threshold: float | None = None,
) -> list[dict[str, Any]]:
    """Retrieve for every question; return one row each with the raw score and whether the top citation is right."""
    found = retrieve_all(db=db, matcher=matcher, questions=questions)
    return judge(db=db, questions=questions, retrievals=found, faq_threshold=faq_threshold)


# ---------------------------------------------------------------- calibration


def fit_logistic(raw: np.ndarray, right: np.ndarray) -> tuple[float, float]:
    """Return (slope, intercept) of P(right | raw), or the defaults when one outcome is missing."""
    if len(set(right.tolist())) < 2:
        return answer_mod.DEFAULT_SLOPE, answer_mod.DEFAULT_INTERCEPT
    model = LogisticRegression(C=1e4, max_iter=10_000)
    model.fit(raw.reshape(-1, 1), right.astype(int))
    return float(model.coef_[0][0]), float(model.intercept_[0])


def confidences(raw: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Return confidences of raw scores under a calibration, rounded as answer_question rounds them."""
    cal = answer_mod.Calibration(threshold=1.0, slope=slope, intercept=intercept)
    return np.array([round(cal.confidence(float(r)), 4) for r in raw])


def choose_threshold(conf: np.ndarray, right: np.ndarray, target: float) -> tuple[float, bool]:
    """Return (threshold, reached): of the confidences giving precision ≥ target, the one answering the most
    questions right — of equal ones the highest, so no wrong answer is given that brings no right one —
    placed halfway to the next lower confidence seen.

    When no threshold reaches the target, returns (1.0, False): nothing above 1 exists, so at most
    answers of confidence exactly 1.0 would be given.
    """
    values = sorted(set(conf.tolist()))
    best: tuple[int, float, int] | None = None  # (right answers, confidence, index)
    for i, t in enumerate(values):
        given = conf >= t
        if given.any() and right[given].mean() >= target:
            key = (int(right[given].sum()), t, i)
            if best is None or key[:2] > best[:2]:
                best = key
    if best is None:
        return 1.0, False
    _, t, i = best
    below = values[i - 1] if i > 0 else max(t - 0.01, 0.0)
    return round((t + below) / 2, 4), True


def calibrate(rows: Sequence[Mapping[str, Any]], target: float = TARGET_PRECISION) -> dict[str, Any]:
    """Fit slope and intercept and choose the threshold on the given rows."""
    usable = [r for r in rows if r["raw"] is not None]
    raw = np.array([r["raw"] for r in usable], dtype=float)
    right = np.array([r["right"] for r in usable], dtype=bool)
    slope, intercept = fit_logistic(raw, right)
    threshold, reached = choose_threshold(confidences(raw, slope, intercept), right, target)
    return {"slope": round(slope, 6), "intercept": round(intercept, 6), "threshold": threshold, "reached": reached}


def measure(rows: Sequence[Mapping[str, Any]], calibration: Mapping[str, Any]) -> dict[str, Any]:
    """Return precision, coverage and the other figures of the rows under a calibration."""
    cal = answer_mod.Calibration(
        threshold=calibration["threshold"], slope=calibration["slope"], intercept=calibration["intercept"]
    )
    n = len(rows)
    answerable = sum(r["answerable"] for r in rows)
    unanswerable = n - answerable
    given = [r for r in rows if r["raw"] is not None and round(cal.confidence(r["raw"]), 4) >= cal.threshold]
    right = sum(r["right"] for r in given)
    false_answers = sum(not r["answerable"] for r in given)
    top1 = sum(r["right"] for r in rows if r["answerable"])
    return {
        "n": n,
        "answerable": answerable,
        "unanswerable": unanswerable,
        "answered": len(given),
        "right": right,
        "precision": round(right / len(given), 4) if given else None,
        "coverage": round(right / answerable, 4) if answerable else None,
        "answer_rate": round(len(given) / n, 4) if n else None,
        "false_answers": round(false_answers / unanswerable, 4) if unanswerable else None,
        "top1": round(top1 / answerable, 4) if answerable else None,
    }


def _halves(rows: Sequence[Mapping[str, Any]], seed: int) -> tuple[list[int], list[int]]:
    """Split row indices in two halves, stratified by answerable, shuffled by the seed."""
    rng = random.Random(seed)
    a: list[int] = []
    b: list[int] = []
    for flag in (True, False):
        idx = [i for i, r in enumerate(rows) if r["answerable"] is flag]
        rng.shuffle(idx)
        half = len(idx) // 2
        a += idx[:half]
        b += idx[half:]
    return sorted(a), sorted(b)


def held_out(
    rows: Sequence[Mapping[str, Any]], target: float = TARGET_PRECISION, seeds: Iterable[int] = range(HELD_OUT_SEEDS)
) -> dict[str, Any]:
    """Calibrate on one half, measure on the other (both ways) for several seeds; return the pooled figures."""
    runs: list[dict[str, Any]] = []
    for seed in seeds:
        a, b = _halves(rows, seed)
        judged: list[dict[str, Any]] = []
        thresholds = []
        for fit_on, test_on in ((a, b), (b, a)):
            cal = calibrate([rows[i] for i in fit_on], target)
            thresholds.append(cal["threshold"])
            c = answer_mod.Calibration(threshold=cal["threshold"], slope=cal["slope"], intercept=cal["intercept"])
            for i in test_on:
                r = rows[i]
                given = r["raw"] is not None and round(c.confidence(r["raw"]), 4) >= c.threshold
                judged.append({**r, "given": given})
        given_rows = [r for r in judged if r["given"]]
        answerable = sum(r["answerable"] for r in judged)
        right = sum(r["right"] for r in given_rows)
        runs.append(
            {
                "seed": seed,
                "precision": right / len(given_rows) if given_rows else None,
                "coverage": right / answerable if answerable else None,
                "answered": len(given_rows),
                "thresholds": thresholds,
            }
        )

    def stats(key: str) -> dict[str, float | None]:
        values = [r[key] for r in runs if r[key] is not None]
        if not values:
            return {"mean": None, "min": None, "max": None}
        return {"mean": round(float(np.mean(values)), 4), "min": round(min(values), 4), "max": round(max(values), 4)}

    return {"splits": len(runs), "precision": stats("precision"), "coverage": stats("coverage"), "runs": runs}


def by_style(rows: Sequence[Mapping[str, Any]], calibration: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the measured figures per question style."""
    styles = list(dict.fromkeys(r["style"] for r in rows))
    return {s: measure([r for r in rows if r["style"] == s], calibration) for s in styles}


# ---------------------------------------------------------------- the whole run


def run_desk_eval(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    models_dir: Path | None = None,
    path: Path | None = None,
    target: float = TARGET_PRECISION,
    write: bool = True,
    fit_half: bool = False,
) -> dict[str, Any]:
    """Run every labelled question, calibrate, check on held-out halves; write the manifest when asked.

    fit_half: calibrate on one half of the questions only (`_halves`, seed 0: the tuning half) and
    measure that calibration on the other half (``test_half``), so the calibration written — and
    shipped as the defaults — is never measured on the questions it was fitted on.
    """
    questions = load_eval_set(path)
    known = _known_sources(db)
    unknown = sorted({source_key(s) for q in questions for s in q.get("answer_sources") or []} - known)
    if unknown:
        log.warning("desk evaluation: %d labelled sources are not in the knowledge base", len(unknown))
    rows = run_questions(db=db, matcher=matcher, questions=questions)
    test_half = None
    if fit_half:
        tune, test = _halves(rows, 0)
        calibration = calibrate([rows[i] for i in tune], target)
        in_sample = measure([rows[i] for i in tune], calibration)
        test_half = measure([rows[i] for i in test], calibration)
    else:
        calibration = calibrate(rows, target)
        in_sample = measure(rows, calibration)
    result: dict[str, Any] = {
        "test_half": test_half,
        "target_precision": target,
        "calibration": calibration,
        "in_sample": in_sample,
        "held_out": held_out(rows, target),
        "by_style": by_style(rows, calibration),
        "knowledge_base": {
            "policies": sum(k.startswith("policy:") for k in known),
            "faqs": sum(k.startswith("faq:") for k in known),
        },
        "unknown_sources": unknown,
        "rows": rows,
        "data_hash": data_hash(questions),
    }
    if write:
        if models_dir is None:
            models_dir = Path(matcher.settings.models_dir)
        result["manifest_path"] = str(write_manifest(models_dir, result))
    return result


def write_manifest(models_dir: Path, result: Mapping[str, Any]) -> Path:
    """Write the calibration (threshold, slope, intercept) and its figures where answer_question reads it."""
    calibration = result["calibration"]
    manifest = {
        "kind": MANIFEST_KIND,
        "format": FORMAT,
        "scoring_version": answer_mod.SCORING_VERSION,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "threshold": calibration["threshold"],
        "slope": calibration["slope"],
        "intercept": calibration["intercept"],
        "target_precision": result["target_precision"],
        "target_reached": calibration["reached"],
        "params": {"keyword_weight": answer_mod.KEYWORD_WEIGHT, "margin_weight": answer_mod.MARGIN_WEIGHT},
        "data_hash": result["data_hash"],
        "knowledge_base": result["knowledge_base"],
        "fitted_on": "tuning half (seed 0)" if result.get("test_half") else "all questions",
        "metrics": {
            "in_sample": result["in_sample"],
            "test_half": result.get("test_half"),
            "held_out": {k: v for k, v in result["held_out"].items() if k != "runs"},
        },
    }
    path = answer_mod.manifest_path(models_dir)
    atomic_write(path, json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"))
    return path


# ---------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _range(stats: Mapping[str, Any]) -> str:
    if stats.get("mean") is None:
        return "—"
    return f"{stats['mean']:.3f}（{stats['min']:.3f}–{stats['max']:.3f}）"


def format_report(result: Mapping[str, Any], *, misses: int = 10) -> str:
    """Render an evaluation result as plain text for the CLI."""
    cal, m, ho = result["calibration"], result["in_sample"], result["held_out"]
    kb = result["knowledge_base"]
    lines = [
        "即时答复评测 / instant answers",
        f"知识库：已发布政策 {kb['policies']} 条，常见问题 {kb['faqs']} 条；评测问题 {m['n']} 个"
        f"（可回答 {m['answerable']}，不可回答 {m['unanswerable']}）",
        "",
        f"阈值 threshold: {cal['threshold']:.4f}"
        + ("" if cal["reached"] else f"（未能达到目标准确率 {result['target_precision']}）")
        + f"   置信度映射 slope {cal['slope']:.3f}, intercept {cal['intercept']:.3f}",
        f"目标准确率 target precision: {result['target_precision']}",
        "",
        "本集校准并评测 in-sample:",
        f"  准确率 precision   {_pct(m['precision'])}   （答对 {m['right']} / 作答 {m['answered']}）",
        f"  覆盖率 coverage    {_pct(m['coverage'])}   （答对 {m['right']} / 可回答 {m['answerable']}）",
        f"  作答率 answer rate {_pct(m['answer_rate'])}   误答不可回答 false answers {_pct(m['false_answers'])}",
        f"  首位来源正确 top-1 {_pct(m['top1'])}   （不论置信度）",
        "",
        *(
            [
                "本校准在另一半问题上的评测 test half（校准只用了调参的一半）:",
                f"  准确率 precision   {_pct(result['test_half']['precision'])}   覆盖率 coverage "
                f"{_pct(result['test_half']['coverage'])}   误答不可回答 {_pct(result['test_half']['false_answers'])}",
                "",
            ]
            if result.get("test_half")
            else []
        ),
        f"留出评测 held-out（分两半互为校准/评测，{ho['splits']} 次随机划分，均值与范围）:",
        f"  准确率 precision   {_range(ho['precision'])}",
        f"  覆盖率 coverage    {_range(ho['coverage'])}",
        "",
        "按问法 by style:",
    ]
    for style, s in result["by_style"].items():
        lines.append(
            f"  {STYLE_LABELS.get(style, style):<18} n={s['n']:<3} top-1 {_pct(s['top1'])}  "
            f"precision {_pct(s['precision'])}  coverage {_pct(s['coverage'])}"
        )
    if result.get("unknown_sources"):
        lines += [
            "",
            f"知识库中找不到的标注来源 sources not in the knowledge base: {'、'.join(result['unknown_sources'])}",
        ]
    wrong = [r for r in result["rows"] if r["answerable"] and not r["right"]]
    if wrong and misses:
        lines += ["", f"首位来源错误（前 {min(misses, len(wrong))} 条）/ wrong top citations"]
        for r in wrong[:misses]:
            lines.append(f"  {r['id']} {r['question']}")
            lines.append(f"      期望 expected: {'；'.join(r['expected'])}   得到 got: {r['got'] or '（无）'}")
    if result.get("manifest_path"):
        lines += ["", f"校准清单已写入 manifest: {result['manifest_path']}"]
    return "\n".join(lines)
