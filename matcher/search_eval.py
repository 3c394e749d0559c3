"""Evaluate need → policy search on a labelled file, beside plain baselines measured in the same run.

A file (CSV or XLSX) has the columns ``query`` and ``expected`` (the expected policy's title or
id); an optional ``split`` column (``tune`` / ``test``) lets a run keep to one part. Three systems
answer every query against the same published catalog:

- **product**: `matcher.search.find` as the API and the pages call it (keyword index, vocabulary
  expansion, fusion and relevance cut-off);
- **bare e5**: the raw query's e5 embedding against the same policy vectors, nothing else;
- **char TF-IDF**: cosine over character 1–3-gram TF-IDF of title, summary and full text.

Reported per system: Hit@1, R@5 (the expected policy in the first five) and MRR over the first 10.
`load_catalog` puts a JSON list of policies into a database, so a held-out set can be evaluated
on its own catalog (tests/data/search_policies.json; sources in tests/data/README.md).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog import service as catalog_service
from catalog.models import Category, Department, Policy, PolicyLevel, PolicyStatus, PolicyType
from catalog.schemas import CategoryIn, DepartmentIn, PolicyIn
from core.text import normalize
from matcher import search
from matcher.engine import Matcher

K = 5
MRR_DEPTH = 10
SYSTEMS = ("product", "bare_e5", "char_tfidf")
SYSTEM_LABELS = {"product": "产品（混合检索）", "bare_e5": "基线：e5 向量", "char_tfidf": "基线：字符 TF-IDF"}


class EvalFileError(ValueError):
    """The labelled file cannot be used; the message says which column or row and why (Chinese)."""


def load_cases(path: Path, *, split: str | None = None) -> list[dict[str, str]]:
    """Read query / expected (/ split) rows from a CSV or XLSX file."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        frame = pd.read_excel(path, dtype=str)
    elif suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig")
    else:
        raise EvalFileError(f"{path.name}：只支持 CSV 或 XLSX 文件")
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("query", "expected") if c not in frame.columns]
    if missing:
        raise EvalFileError(f"{path.name}：缺少列 {', '.join(missing)}（需要 query 与 expected）")
    frame = frame.fillna("")
    if split:
        if "split" not in frame.columns:
            raise EvalFileError(f"{path.name}：没有 split 列，无法只取 {split}")
        frame = frame[frame["split"].str.strip() == split]
    cases = []
    for i, row in enumerate(frame.to_dict("records"), start=2):
        query, expected = str(row["query"]).strip(), str(row["expected"]).strip()
        if not query or not expected:
            raise EvalFileError(f"{path.name} 第 {i} 行：query 与 expected 都不能为空")
        cases.append({"query": query, "expected": expected, "split": str(row.get("split", "")).strip()})
    if not cases:
        raise EvalFileError(f"{path.name}：没有可用的评测行")
    return cases


def load_catalog(db: Session, path: Path, *, today: dt.date | None = None) -> list[Policy]:
    """Create and publish the policies of a JSON list in `db`.

    Each item has a title and summary, and optionally full_text, doc_number and region_codes (GB/T 2260;
    empty = nationwide); other keys (a source URL, a key) are ignored.
    """
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    today = today or dt.date.today()
    dept = db.scalar(select(Department).where(Department.code == "eval-search"))
    if dept is None:
        dept = catalog_service.create_department(
            db=db,
            department_in=DepartmentIn(
                code="eval-search", name="检索评测数据", short_name="评测", region_code="440000"
            ),
        )
    cat = db.scalar(select(Category).where(Category.code == "9901"))
    if cat is None:
        cat = catalog_service.create_category(db=db, category_in=CategoryIn(code="9901", name="检索评测"))
    out = []
    for item in items:
        policy = catalog_service.create_policy(
            db=db,
            policy_in=PolicyIn(
                title=item["title"],
                summary=item.get("summary"),
                full_text=item.get("full_text"),
                doc_number=item.get("doc_number"),
                region_codes=item.get("region_codes") or None,
                issuing_department=dept.code,
                level=PolicyLevel.municipal,
                policy_type=PolicyType.informational,
                categories=[cat.code],
                valid_to_on=today + dt.timedelta(days=365),
                interpreter_name="评测",
                interpreter_contact="0000-00000000",
            ),
            actor=None,
        )
        catalog_service.publish_policy(db=db, policy_id=policy.id, actor=None, announce=False)
        out.append(policy)
    db.flush()
    return out


def _resolve(db: Session, cases: Sequence[Mapping[str, str]]) -> tuple[dict[str, int], list[str]]:
    """Map each expected value (title or id) to a published policy id; return unknown ones too."""
    rows = db.execute(select(Policy.id, Policy.title).where(Policy.status == PolicyStatus.published)).all()
    by_title = {normalize(t): pid for pid, t in rows}
    ids = {pid for pid, _ in rows}
    out, unknown = {}, []
    for case in cases:
        e = case["expected"]
        pid = int(e) if e.isdigit() and int(e) in ids else by_title.get(normalize(e))
        if pid is None:
            unknown.append(e)
        else:
            out[e] = pid
    return out, sorted(set(unknown))


def _metrics(ranked: Sequence[int], expected: int) -> dict[str, float]:
    first = next((i for i, pid in enumerate(ranked[:MRR_DEPTH]) if pid == expected), None)
    return {
        "hit_at_1": float(bool(ranked) and ranked[0] == expected),
        "recall_at_5": float(expected in ranked[:K]),
        "mrr": 0.0 if first is None else 1.0 / (first + 1),
    }


def _tfidf_ranker(db: Session) -> Callable[[str], list[int]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = db.execute(
        select(Policy.id, Policy.title, Policy.summary, Policy.full_text).where(Policy.status == PolicyStatus.published)
    ).all()
    ids = np.array([r[0] for r in rows])
    texts = [normalize(" ".join(filter(None, r[1:]))) for r in rows]
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    matrix = vectorizer.fit_transform(texts)

    def rank(query: str) -> list[int]:
        scores = (matrix @ vectorizer.transform([normalize(query)]).T).toarray().ravel()
        order = np.argsort(-scores, kind="stable")[:MRR_DEPTH]
        return [int(ids[i]) for i in order if scores[i] > 0]

    return rank


def _bare_ranker(db: Session, matcher: Matcher) -> Callable[[str], list[int]]:
    index = matcher.policy_index(db)

    def rank(query: str) -> list[int]:
        scores, found = index.search(matcher.encode([normalize(query)], "query"), min(len(index), MRR_DEPTH))
        return [int(i) for i in found[0] if i >= 0]

    return rank


def evaluate(*, db: Session, matcher: Matcher, cases: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """Run every case through the product and both baselines; return metrics, timings and the worst misses."""
    cases = list(cases)
    expected, unknown = _resolve(db, cases)
    usable = [c for c in cases if c["expected"] in expected]
    # Embed every query once up front (batched); the systems then find them in the cache.
    expander = search.expander(db)
    matcher.encode(
        list(
            dict.fromkeys(
                [normalize(c["query"]) for c in usable]
                + [expander.embedding_text(normalize(c["query"])) for c in usable]
            )
        ),
        "query",
    )
    rankers: dict[str, Callable[[str], list[int]]] = {
        "product": lambda q: [h.policy.id for h in search.find(db=db, matcher=matcher, q=q, limit=MRR_DEPTH).hits],
        "bare_e5": _bare_ranker(db, matcher),
        "char_tfidf": _tfidf_ranker(db),
    }
    titles: dict[int, str] = {int(pid): str(title) for pid, title in db.execute(select(Policy.id, Policy.title))}
    systems: dict[str, Any] = {}
    for name, rank in rankers.items():
        rows: list[dict[str, Any]] = []
        times: list[float] = []
        for case in usable:
            start = time.perf_counter()
            ranked = rank(case["query"])
            times.append(time.perf_counter() - start)
            want = expected[case["expected"]]
            rows.append(
                {
                    "query": case["query"],
                    "expected": titles[want],
                    "got": titles.get(ranked[0]) if ranked else None,
                    **_metrics(ranked, want),
                }
            )
        n = len(rows) or 1
        systems[name] = {
            "n": len(rows),
            **{m: round(sum(r[m] for r in rows) / n, 4) for m in ("hit_at_1", "recall_at_5", "mrr")},
            "p50_ms": round(float(np.median(times)) * 1000, 2) if times else 0.0,
            "misses": sorted((r for r in rows if r["hit_at_1"] < 1), key=lambda r: r["mrr"])[:5],
        }
    return {"n": len(usable), "unknown_expected": unknown, "systems": systems}


def format_report(result: Mapping[str, Any]) -> str:
    """Render the comparison as a plain-text table (Chinese labels), with the product's worst misses."""
    lines = [f"检索评测：{result['n']} 条需求", f"{'系统':<16}{'Hit@1':>8}{'R@5':>8}{'MRR':>8}{'p50 ms':>9}"]
    for name in SYSTEMS:
        s = result["systems"][name]
        lines.append(
            f"{SYSTEM_LABELS[name]:<14}{s['hit_at_1']:>8.3f}{s['recall_at_5']:>8.3f}{s['mrr']:>8.3f}{s['p50_ms']:>9.1f}"
        )
    if result["unknown_expected"]:
        lines.append("找不到的期望政策（未计入）：" + "、".join(result["unknown_expected"][:10]))
    misses = result["systems"]["product"]["misses"]
    if misses:
        lines.append("产品最差的未命中：")
        lines += [f"  {m['query']} → 期望《{m['expected']}》，得到《{m['got'] or '（无结果）'}》" for m in misses]
    return "\n".join(lines)
