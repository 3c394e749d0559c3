"""Offline evaluation of matching quality against the hand-written set in tests/data/matching_eval.json.

Three questions, each answered on whatever catalog the session holds (the demo catalog in tests
and the notebook, the live one from `huiqi eval matching`):

- **Search** (`evaluate_search`): does `search.search` put a relevant policy first (Hit@1), how
  many of the relevant policies reach the top k (Recall@k), and how high is the first relevant one
  (MRR over the top 10) — overall and per query style (plain, paraphrase, traditional,
  abbreviation, colloquial).
- **Eligibility** (`evaluate_eligibility`): do boundary cases get the verdict the policy's text
  implies; the facts are taken as written in the case, nothing is derived.
- **Blend** (`evaluate_blend`): what each component of the recommendation score contributes,
  by ranking every policy for an anonymous firm whose only information is the query, under
  weights with components removed or kept alone.

Titles are compared after `core.text.normalize`, the form the catalog saves them in.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.fields import FIELDS
from catalog.models import Policy, PolicyStatus
from core.text import normalize
from matcher import calculator, eligibility, search
from matcher import tags as tags_mod
from matcher.eligibility import ELIGIBLE, INELIGIBLE, LIKELY
from matcher.engine import Matcher
from matcher.ranking import Weights
from matcher.recommend import Recommendation

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EVAL_PATH = ROOT / "tests" / "data" / "matching_eval.json"
STYLES = ("plain", "paraphrase", "traditional", "abbreviation", "colloquial")
STYLE_LABELS = {
    "plain": "直述 plain",
    "paraphrase": "改写 paraphrase",
    "traditional": "繁体 traditional",
    "abbreviation": "简称 abbreviation",
    "colloquial": "口语 colloquial",
}
VERDICTS = (ELIGIBLE, LIKELY, INELIGIBLE)
MRR_DEPTH = 10  # the first relevant policy counts only within the first page of results


def load_eval_set(path: Path | None = None) -> dict[str, Any]:
    """Read the evaluation set: need cases (query → relevant titles) and eligibility cases."""
    return json.loads(Path(path or DEFAULT_EVAL_PATH).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- ranking metrics


def _relevance(titles: Sequence[str], relevant: set[str], k: int) -> dict[str, float | None]:
    """Score one ranked list of normalised titles against the relevant ones."""
    first = next((i for i, t in enumerate(titles[:MRR_DEPTH]) if t in relevant), None)
    return {
        "hit_at_1": 1.0 if titles[:1] and titles[0] in relevant else 0.0,
        "recall_at_k": len(relevant & set(titles[:k])) / len(relevant) if relevant else 0.0,
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
        "first_rank": None if first is None else first + 1,
    }


def _mean(rows: Sequence[Mapping[str, Any]], key: str) -> float:
    return round(sum(float(r[key]) for r in rows) / len(rows), 4) if rows else 0.0


def _summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"n": len(rows), **{key: _mean(rows, key) for key in ("hit_at_1", "recall_at_k", "mrr")}}


def _by_style(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    styles = [s for s in STYLES if any(r["style"] == s for r in rows)]
    styles += sorted({r["style"] for r in rows} - set(styles))
    return {s: _summary([r for r in rows if r["style"] == s]) for s in styles}


def _miss_order(row: Mapping[str, Any]) -> tuple[int, int, str]:
    """Worst first: nothing relevant in the top 10, then the lowest first relevant rank."""
    rank = row["first_rank"]
    return (0 if rank is None else 1, -(rank or 0), row["id"])


# ---------------------------------------------------------------- search


def _warm(matcher: Matcher, texts: Sequence[str]) -> None:
    """Embed the query texts in batches up front; the service then finds each one in the cache.

    Embedding one short text at a time costs several times a batch's share, and the cached
    vector is the same either way, so the figures do not change — only the time.
    """
    matcher.encode(list(dict.fromkeys(texts)), "query")


def _search_texts(db: Session, queries: Iterable[str]) -> list[str]:
    """Return the texts `search.search` embeds for the queries (abbreviations expanded the same way).

    Should search change how it expands a query, the warm-up merely misses the cache.
    """
    expander = search.expander(db)
    return [expander.embedding_text(normalize(q)) for q in queries]


def evaluate_search(*, db: Session, matcher: Matcher, cases: Iterable[Mapping[str, Any]], k: int = 5) -> dict[str, Any]:
    """Run every need case through hybrid search; return Hit@1, Recall@k, MRR overall and by style, and the misses."""
    cases = list(cases)
    _warm(matcher, _search_texts(db, [c["query"] for c in cases]))
    rows = []
    for case in cases:
        relevant = {normalize(t) for t in case["relevant"]}
        hits = search.search(db=db, matcher=matcher, q=case["query"], limit=max(k, MRR_DEPTH))
        titles = [normalize(h.policy.title) for h in hits]
        rows.append(
            {
                "id": case.get("id"),
                "query": case["query"],
                "style": case.get("style", "plain"),
                "expected": sorted(relevant),
                "got": titles[:3],
                **_relevance(titles, relevant, k),
            }
        )
    misses = sorted((r for r in rows if not r["hit_at_1"]), key=_miss_order)
    log.info("search evaluation: %d cases, %d misses at 1", len(rows), len(misses))
    return {"k": k, **_summary(rows), "by_style": _by_style(rows), "misses": misses, "cases": rows}


# ---------------------------------------------------------------- eligibility


def case_facts(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Return the facts of an eligibility case as written: absent fields unknown, lists as sets, ISO dates as dates."""
    unknown = set(raw) - set(FIELDS)
    if unknown:
        raise ValueError(f"评测用例含未知字段 {'、'.join(sorted(unknown))}")
    facts: dict[str, Any] = {name: None for name in FIELDS}
    for name, value in raw.items():
        kind = FIELDS[name].type
        if value is None:
            continue
        if kind == "set":
            facts[name] = frozenset(value)
        elif kind == "date" and isinstance(value, str):
            facts[name] = dt.date.fromisoformat(value)
        else:
            facts[name] = value
    return facts


def _policies_by_title(db: Session) -> dict[str, Policy]:
    """Map normalised titles to policies, a published one winning over drafts and withdrawn ones."""
    out: dict[str, Policy] = {}
    for policy in db.scalars(select(Policy).order_by(Policy.id)):
        key = normalize(policy.title)
        held = out.get(key)
        if held is None or (held.status != PolicyStatus.published and policy.status == PolicyStatus.published):
            out[key] = policy
    return out


def evaluate_eligibility(*, db: Session, cases: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Judge every eligibility case with the rules engine; return accuracy, the confusion table and the failures."""
    policies = _policies_by_title(db)
    confusion = {e: dict.fromkeys(VERDICTS, 0) for e in VERDICTS}
    failures, missing, n = [], [], 0
    for case in cases:
        policy = policies.get(normalize(case["policy"]))
        if policy is None:
            missing.append(case["policy"])
            continue
        today = dt.date.fromisoformat(case["today"]) if case.get("today") else dt.date.today()
        verdict = eligibility.evaluate(policy.rules, case_facts(case["facts"]), today=today)
        expected, got = case["expected"], verdict.status
        confusion.setdefault(expected, dict.fromkeys(VERDICTS, 0))
        confusion[expected][got] = confusion[expected].get(got, 0) + 1
        n += 1
        if got != expected:
            failures.append(
                {
                    "id": case.get("id"),
                    "policy": case["policy"],
                    "expected": expected,
                    "got": got,
                    "summary": verdict.summary,
                    "why": case.get("why"),
                }
            )
    if missing:
        log.warning("eligibility evaluation: %d cases name no policy in the catalog", len(missing))
    accuracy = round((n - len(failures)) / n, 4) if n else 0.0
    return {"n": n, "accuracy": accuracy, "confusion": confusion, "failures": failures, "unknown_policies": missing}


def confusion_frame(confusion: Mapping[str, Mapping[str, int]]) -> pd.DataFrame:
    """Return the confusion table as a DataFrame: rows expected, columns got."""
    frame = pd.DataFrame(confusion).T.fillna(0).astype(int)
    frame.index.name, frame.columns.name = "expected", "got"
    return frame


# ---------------------------------------------------------------- blend ablation


def blend_variants(base: Weights) -> dict[str, Weights]:
    """Return the standard ablations of a weighting: all, each component alone, each of three left out."""
    off = {"rules": 0.0, "tags": 0.0, "semantic": 0.0, "urgency": 0.0}

    def only(name: str) -> Weights:
        w = {**off, name: 1.0}
        return dataclasses.replace(base, rules=w["rules"], tags=w["tags"], semantic=w["semantic"], urgency=w["urgency"])

    return {
        "all": base,
        "rules_only": only("rules"),
        "tags_only": only("tags"),
        "semantic_only": only("semantic"),
        "without_semantic": dataclasses.replace(base, semantic=0.0),
        "without_tags": dataclasses.replace(base, tags=0.0),
        "without_urgency": dataclasses.replace(base, urgency=0.0),
    }


def _component_key(w: Weights) -> tuple[Any, ...]:
    """The parts of a weighting that change the components themselves, not just their blend."""
    return (w.semantic_floor, w.semantic_ceiling, w.urgency_days)


def _rank_with(weights: Weights | None, **kwargs: Any) -> list[Recommendation]:
    """Call `calculator.rank`, with the matcher's weights swapped for the call when weights are given.

    Only weightings that change the components need this; the swap is undone afterwards, but a
    matcher serving requests at the same moment would see it, so evaluate on a matcher of its own.
    """
    if weights is None:
        return calculator.rank(**kwargs)[0]
    matcher = kwargs["matcher"]
    original = matcher.weights
    try:
        matcher.weights = weights
        return calculator.rank(**kwargs)[0]
    finally:
        matcher.weights = original


def evaluate_blend(
    *,
    db: Session,
    matcher: Matcher,
    cases: Iterable[Mapping[str, Any]],
    weights_variants: Mapping[str, Weights] | None = None,
    today: dt.date | None = None,
    k: int = 5,
) -> pd.DataFrame:
    """Rank every open policy for an anonymous firm described only by each query, under each weighting.

    The firm has no facts; its tags are those the query mentions (as the calculator derives them).
    Every verdict is kept, so nothing is filtered and only the score orders the list. Components
    are computed once per query and re-blended per weighting (the sort is the one `rank` uses);
    weightings that change the components themselves (semantic floor/ceiling, urgency days) get
    their own ranking run.
    """
    today = today or dt.date.today()
    variants = dict(weights_variants or blend_variants(matcher.weights))
    cases = list(cases)
    vocab = tags_mod.Vocabulary.from_db(db)
    blank: dict[str, Any] = {name: None for name in FIELDS}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    original = matcher.weights
    _warm(matcher, [c["query"] for c in cases])
    for case in cases:
        relevant = {normalize(t) for t in case["relevant"]}
        firm_tags = set(tags_mod.enterprise_tags(blank, (case["query"],), vocab))
        facts = {**blank, "tags": frozenset(firm_tags)}
        ranked_by_key: dict[tuple[Any, ...], list[Recommendation]] = {}
        for name, weights in variants.items():
            key = _component_key(weights)
            if key not in ranked_by_key:
                ranked_by_key[key] = _rank_with(
                    weights if key != _component_key(original) else None,
                    db=db,
                    matcher=matcher,
                    facts=facts,
                    firm_tags=firm_tags,
                    needs_text=case["query"],
                    query_text=case["query"],
                    today=today,
                    include={ELIGIBLE, LIKELY, INELIGIBLE},
                    limit=10_000,
                )
            ranked = sorted(ranked_by_key[key], key=lambda r: (-r.components.score(weights), r.policy.id))
            titles = [normalize(r.policy.title) for r in ranked]
            rows[name].append({"style": case.get("style", "plain"), **_relevance(titles, relevant, k)})
    records = []
    for name, weights in variants.items():
        summary = _summary(rows[name])
        records.append(
            {
                "variant": name,
                "w_rules": weights.rules,
                "w_tags": weights.tags,
                "w_semantic": weights.semantic,
                "w_urgency": weights.urgency,
                "n": summary["n"],
                "hit_at_1": summary["hit_at_1"],
                "recall_at_k": summary["recall_at_k"],
                "mrr": summary["mrr"],
            }
        )
    frame = pd.DataFrame.from_records(records).set_index("variant")
    if "all" in frame.index:
        frame["delta_mrr"] = (frame["mrr"] - frame.loc["all", "mrr"]).round(4)
    return frame


# ---------------------------------------------------------------- the whole run and its report


def run_matching_eval(
    *,
    db: Session,
    matcher: Matcher,
    path: Path | None = None,
    today: dt.date | None = None,
    blend: bool = True,
) -> dict[str, Any]:
    """Run search, eligibility and (optionally) blend evaluations on the current catalog."""
    data = load_eval_set(path)
    result: dict[str, Any] = {
        "search": evaluate_search(db=db, matcher=matcher, cases=data["need_cases"]),
        "eligibility": evaluate_eligibility(db=db, cases=data["eligibility_cases"]),
    }
    if blend:
        frame = evaluate_blend(db=db, matcher=matcher, cases=data["need_cases"], today=today)
        result["blend"] = frame.reset_index().to_dict(orient="records")
    return result


def _fmt(value: float) -> str:
    return f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Align a small table in plain text; CJK characters count as two columns."""

    def width(text: str) -> int:
        return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)

    cols = [max(width(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            pad = " " * (cols[i] - width(str(cell)))
            out.append(f"{cell}{pad}" if i == 0 else f"{pad}{cell}")
        return "  ".join(out).rstrip()

    return [line(header), "  ".join("-" * c for c in cols), *(line(r) for r in rows)]


def format_report(result: Mapping[str, Any], *, misses: int = 10) -> str:
    """Render an evaluation result as plain text for the CLI."""
    search = result["search"]
    k = search["k"]
    lines = ["匹配质量评测 / matching quality", ""]
    lines.append(f"检索 search ({search['n']} 条需求 queries)")
    header = ["", "n", "Hit@1", f"R@{k}", "MRR"]
    rows = [
        ["总体 overall", str(search["n"]), _fmt(search["hit_at_1"]), _fmt(search["recall_at_k"]), _fmt(search["mrr"])]
    ]
    for style, s in search["by_style"].items():
        rows.append(
            [STYLE_LABELS.get(style, style), str(s["n"]), _fmt(s["hit_at_1"]), _fmt(s["recall_at_k"]), _fmt(s["mrr"])]
        )
    lines += _table(header, rows)

    elig = result["eligibility"]
    lines += ["", f"资格判断 eligibility ({elig['n']} 条边界用例 cases): 准确率 accuracy {_fmt(elig['accuracy'])}"]
    lines += _table(
        ["期望\\结果 expected\\got", *VERDICTS],
        [[e, *(str(elig["confusion"].get(e, {}).get(g, 0)) for g in VERDICTS)] for e in VERDICTS],
    )
    for f in elig["failures"]:
        lines.append(f"  ✗ {f['id']} {f['policy']}: 期望 {f['expected']}，得到 {f['got']}（{f['summary']}）")
    if elig.get("unknown_policies"):
        lines.append(f"  目录中找不到的政策 policies not in catalog: {'、'.join(elig['unknown_policies'])}")

    if result.get("blend"):
        lines += ["", "排序组件消融 blend ablation (匿名企业，仅有需求文本 / anonymous firm, query only)"]
        lines += _table(
            ["variant", "rules", "tags", "sem", "urg", "Hit@1", f"R@{k}", "MRR", "ΔMRR"],
            [
                [
                    r["variant"],
                    f"{r['w_rules']:.2f}",
                    f"{r['w_tags']:.2f}",
                    f"{r['w_semantic']:.2f}",
                    f"{r['w_urgency']:.2f}",
                    _fmt(r["hit_at_1"]),
                    _fmt(r["recall_at_k"]),
                    _fmt(r["mrr"]),
                    f"{r.get('delta_mrr', 0.0):+.3f}",
                ]
                for r in result["blend"]
            ],
        )

    if search["misses"] and misses:
        lines += ["", f"检索未命中（最差 {min(misses, len(search['misses']))} 条）/ worst search misses"]
        for m in search["misses"][:misses]:
            rank = "—" if m["first_rank"] is None else str(m["first_rank"])
            lines.append(f"  [{m['style']}] {m['query']}")
            lines.append(f"      期望 expected: {'；'.join(m['expected'])}  (首个相关排名 first relevant: {rank})")
            lines.append(f"      得到 got: {'；'.join(m['got']) or '（无结果）'}")
    return "\n".join(lines)
