"""Hot topics (共性诉求): recent enquiries grouped by what they ask about, for the monthly joint meeting.

Each enquiry's title and content are normalised (NFKC, traditional → simplified) and stripped of
question filler (请问、怎么、需要、有没有 …), then turned into TF-IDF vectors of character 2–3-grams.
Average-linkage agglomerative clustering on cosine distance (``distance_threshold``, default 0.8)
groups enquiries about the same subject — "小微企业房租补贴怎么申请" and "請問小微企業的房租補貼在哪裡申請"
end up together, a question about 出口退税 and one about 房租补贴 do not. No embedder is loaded: the
whole thing is cheap enough for an API request and the monthly report.

A cluster lists its size, a representative question (the member closest on average to the others),
its top terms (substrings shared by at least half of the members, longest first when equally
common), the departments it went to and the kinds of enquiry. Clusters smaller than ``min_size`` are
not topics. At most ``max_cases`` of the most recent enquiries are clustered (the similarity matrix is
n²); a larger window is cut and says so in the result.

Firms' comments on the policies they rated (desk.ratings) are clustered with the enquiries of the
same window (a desk officer's view: comments on their department's policies); a topic says how
many members came from each source and lists both kinds of ids.

Policies drawing many enquiries are listed for curators: a policy counts an enquiry when it is the
enquiry's related policy or is cited by the instant answer the firm was shown (a confident one); ``policy_flag_min`` or more enquiries
flags it (its summary or interpretation may be unclear).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalog.models import Department, Policy
from core.db import utcnow
from core.text import normalize
from desk import ratings as desk_ratings
from desk.models import Case

DEFAULT_DAYS = 30
DEFAULT_DISTANCE = 0.8
DEFAULT_MIN_SIZE = 2
DEFAULT_MAX_CASES = 3000
DEFAULT_POLICY_FLAG_MIN = 5
MAX_TERMS = 5
REP_TITLE_MAX = 60  # a rating comment shown as a topic's title is cut here
_TERM_MAX_LEN = 8
_TERM_MEMBERS = 60  # members scanned for shared terms (the most central ones)

# Question filler that says nothing about the subject; removed before vectorising, longest first.
_FILLER = sorted(
    [
        "请问",
        "您好",
        "你好",
        "麻烦",
        "咨询一下",
        "咨询",
        "我们",
        "我司",
        "本公司",
        "咱们",
        "公司",
        "怎么办",
        "怎么样",
        "怎么",
        "怎样",
        "如何",
        "为什么",
        "什么",
        "哪些",
        "哪里",
        "哪个",
        "需不需要",
        "要不要",
        "需要",
        "准备",
        "材料",
        "资料",
        "可不可以",
        "可以",
        "能不能",
        "能否",
        "有没有",
        "是不是",
        "是否",
        "多久",
        "多少",
        "一般",
        "时候",
        "现在",
        "今年",
        "去年",
        "已经",
        "还是",
        "还",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "的",
        "了",
        "得",
        "是",
        "要",
        "有",
        "在",
        "和",
        "跟",
        "与",
        "及",
        "一下",
        "一些",
        "这个",
        "那个",
        "听说",
        "想",
        "问",
    ],
    key=len,
    reverse=True,
)
_FILLER_RE = re.compile("|".join(map(re.escape, _FILLER)))
_NON_WORD = re.compile(r"[^\w]+")


def prepare(text: str) -> str:
    """Return the text as clustered: normalised, filler removed, punctuation turned into spaces."""
    text = _FILLER_RE.sub(" ", normalize(text))
    return _NON_WORD.sub(" ", text).strip()


@dataclass
class Cluster:
    """One group of similar enquiries: member indexes into the input, the representative one, shared terms."""

    members: list[int]
    representative: int
    terms: list[tuple[str, int]]  # (term, how many members contain it)
    cohesion: float  # mean similarity of members to the representative


def cluster_texts(
    texts: Sequence[str], *, distance_threshold: float = DEFAULT_DISTANCE, min_size: int = DEFAULT_MIN_SIZE
) -> list[Cluster]:
    """Group texts about the same subject; return the clusters of at least min_size, largest first."""
    docs = [prepare(t) for t in texts]
    usable = [i for i, d in enumerate(docs) if len(d.replace(" ", "")) >= 2]
    if len(usable) < max(2, min_size):
        return []
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3), sublinear_tf=True)
    matrix = vectorizer.fit_transform([docs[i] for i in usable])
    sim = (matrix @ matrix.T).toarray()
    dist = np.clip(1.0 - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=distance_threshold
    ).fit_predict(dist)
    out = []
    for label in set(labels.tolist()):
        local = np.flatnonzero(labels == label)
        if len(local) < min_size:
            continue
        block = sim[np.ix_(local, local)]
        mean_sim = (block.sum(axis=1) - 1.0) / max(len(local) - 1, 1)
        order = np.argsort(-mean_sim, kind="stable")
        best = int(local[order[0]])
        central = [docs[usable[int(local[j])]] for j in order[:_TERM_MEMBERS]]
        out.append(
            Cluster(
                members=[usable[int(j)] for j in local],
                representative=usable[best],
                terms=shared_terms(central),
                cohesion=float(sim[best, local].mean()),
            )
        )
    out.sort(key=lambda c: (-len(c.members), c.members[0]))
    return out


def shared_terms(docs: Sequence[str], *, limit: int = MAX_TERMS) -> list[tuple[str, int]]:
    """Return substrings (2–8 characters) found in at least half of the prepared docs, most common first.

    A substring inside a longer one that is nearly as common (≥ 80 %) is dropped in favour of the
    longer one, so 房租补贴 is listed rather than 房租, 租补 and 补贴.
    """
    df: Counter[str] = Counter()
    for doc in docs:
        subs = set()
        for seg in doc.split():
            for length in range(2, min(_TERM_MAX_LEN, len(seg)) + 1):
                for i in range(len(seg) - length + 1):
                    subs.add(seg[i : i + length])
        df.update(subs)
    need = max(2, math.ceil(0.5 * len(docs)))
    candidates = {s: c for s, c in df.items() if c >= need and not s.isdigit()}
    kept = [
        s for s in candidates if not any(o != s and s in o and candidates[o] >= 0.8 * candidates[s] for o in candidates)
    ]
    kept.sort(key=lambda s: (-candidates[s], -len(s), s))
    return [(s, candidates[s]) for s in kept[:limit]]


# ---------------------------------------------------------------- over the cases


@dataclass
class HotTopics:
    """The hot topics of a window of days, and the policies that drew enquiries."""

    start: dt.datetime
    end: dt.datetime
    cases: int  # enquiries in the window
    ratings: int  # rating comments clustered with the enquiries (the newest, when the window holds more)
    clustered: int  # enquiries clustered (at most max_cases)
    truncated: bool
    topics: list[dict[str, Any]] = field(default_factory=list)
    policies: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-safe data."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "cases": self.cases,
            "ratings": self.ratings,
            "clustered": self.clustered,
            "truncated": self.truncated,
            "topics": self.topics,
            "policies": self.policies,
        }


def _cited_policy_ids(instant_answer: Any) -> set[int]:
    if not isinstance(instant_answer, dict) or not instant_answer.get("confident"):
        return set()  # only answers the firm was shown
    out = set()
    for cite in instant_answer.get("citations") or []:
        if isinstance(cite, dict) and cite.get("source") == "policy" and isinstance(cite.get("id"), int):
            out.add(cite["id"])
    return out


def _representative(index: int, picked: Sequence[Any], comments: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Describe a cluster's representative member: an enquiry, or a firm's comment on a policy it rated."""
    if index < len(picked):
        rep = picked[index]
        return {"source": "case", "case_id": rep.id, "number": rep.number, "title": rep.title, "content": rep.content}
    c = comments[index - len(picked)]
    title = c["comment"] if len(c["comment"]) <= REP_TITLE_MAX else c["comment"][:REP_TITLE_MAX] + "…"
    return {
        "source": "rating",
        "case_id": None,
        "number": None,
        "rating_id": c["rating_id"],
        "policy_id": c["policy_id"],
        "policy_title": c["policy_title"],
        "stars": c["stars"],
        "title": title,
        "content": c["comment"],
    }


def hot_topics(
    *,
    db: Session,
    days: int = DEFAULT_DAYS,
    end: dt.datetime | None = None,
    start: dt.datetime | None = None,
    department_id: int | None = None,
    distance_threshold: float = DEFAULT_DISTANCE,
    min_size: int = DEFAULT_MIN_SIZE,
    max_cases: int = DEFAULT_MAX_CASES,
    max_topics: int = 20,
    policy_flag_min: int = DEFAULT_POLICY_FLAG_MIN,
) -> HotTopics:
    """Cluster the enquiries received in [start, end) (default: the last `days` days) into hot topics.

    With department_id only that department's cases count (a desk officer's view).
    """
    end = end or utcnow()
    start = start or end - dt.timedelta(days=days)
    q = select(
        Case.id,
        Case.number,
        Case.title,
        Case.content,
        Case.kind,
        Case.department_id,
        Case.related_policy_id,
        Case.instant_answer,
        Case.received_at,
    ).where(Case.received_at >= start, Case.received_at < end)
    if department_id is not None:
        q = q.where(Case.department_id == department_id)
    rows = db.execute(q.order_by(Case.received_at.desc(), Case.id.desc())).all()
    total = len(rows)
    # Firms' comments on policies they rated are a second source, clustered with the enquiries. Both share
    # the max_cases budget (the similarity matrix is n²); comments keep at least a quarter of it.
    comments = desk_ratings.comments_between(
        db=db, start=start, end=end, department_id=department_id, limit=max_cases + 1
    )
    rating_total = len(comments)
    comments = comments[: max(max_cases - total, max_cases // 4)]
    picked = rows[: max_cases - len(comments)]
    texts = [f"{r.title or ''} {r.content or ''}" for r in picked] + [c["comment"] for c in comments]
    clusters = cluster_texts(texts, distance_threshold=distance_threshold, min_size=min_size)[:max_topics]

    dept_ids = {r.department_id for r in picked if r.department_id is not None}
    names = (
        dict(db.execute(select(Department.id, Department.name).where(Department.id.in_(dept_ids))).tuples().all())
        if dept_ids
        else {}
    )
    topics = []
    for rank, cluster in enumerate(clusters, start=1):
        members = [picked[i] for i in cluster.members if i < len(picked)]
        rated = [comments[i - len(picked)] for i in cluster.members if i >= len(picked)]
        depts = Counter(r.department_id for r in members)
        topics.append(
            {
                "rank": rank,
                "count": len(members) + len(rated),
                "representative": _representative(cluster.representative, picked, comments),
                "terms": [t for t, _ in cluster.terms],
                "cohesion": round(cluster.cohesion, 3),
                "departments": [
                    {
                        "department_id": did,
                        "name": names.get(did, "统一分拨（未分配部门）")
                        if did is not None
                        else "统一分拨（未分配部门）",
                        "count": n,
                    }
                    for did, n in depts.most_common()
                ],
                "kinds": dict(Counter(r.kind for r in members).most_common()),
                "sources": {"case": len(members), "rating": len(rated)},
                "case_ids": sorted(r.id for r in members),
                "rating_ids": sorted(c["rating_id"] for c in rated),
            }
        )

    related: Counter[int] = Counter()
    cited: Counter[int] = Counter()
    either: Counter[int] = Counter()
    for r in rows:
        ids = _cited_policy_ids(r.instant_answer)
        cited.update(ids)
        if r.related_policy_id is not None:
            related[r.related_policy_id] += 1
            ids = ids | {r.related_policy_id}
        either.update(ids)
    policies = []
    if either:
        titles = dict(db.execute(select(Policy.id, Policy.title).where(Policy.id.in_(list(either)))).tuples().all())
        for pid, count in sorted(either.items(), key=lambda kv: (-kv[1], kv[0])):
            if pid not in titles:
                continue  # deleted since
            policies.append(
                {
                    "policy_id": pid,
                    "title": titles[pid],
                    "enquiries": count,
                    "related": related[pid],
                    "cited": cited[pid],
                    "flagged": count >= policy_flag_min,
                }
            )
    return HotTopics(
        start=start,
        end=end,
        cases=total,
        ratings=len(comments),
        clustered=len(picked),
        truncated=total > len(picked) or rating_total > len(comments),
        topics=topics,
        policies=policies,
    )
