"""Does a firm's profile vector still find the policies its needs ask for? A check for profile-text changes.

The project's evaluations embed need queries and policies, never a firm's profile text
(`matcher.vectors.firm_texts`). This wraps each of the 117 need cases of
tests/data/matching_eval.json in a demo firm's profile — the demo firm whose own needs are most
alike (character TF-IDF), and separately a random demo firm — blends it as the batch does
(`vectors.blend`: profile text with the needs inside, and the needs text alone) and ranks the demo
catalog's published policies by cosine. Reported: Hit@1, R@5 and MRR of the relevant titles for the
current profile text and for the alternatives below, the needs query alone as a reference.

It measures only whether the needs still come through; what the profile says about the firm
(industry, products, scope) has no labels here. Alternatives measured on 2026-12-06 (2,000 demo firms):

- profile text without the needs (the needs are embedded separately anyway; 31 % fewer tokens);
- the profile text alone, no separate needs vector (20 % fewer tokens).

Both lost (docs/performance.md). Run: ``python -m bench.profile_text`` (a temporary SQLite demo database;
e5 through a temporary cache, ~90k tokens).
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_text", description=__doc__.splitlines()[0])
    parser.add_argument("--firms", type=int, default=2000, help="demo firms to draw the profiles from")
    parser.add_argument("--seed", type=int, default=7, help="of the random firm per case")
    args = parser.parse_args(argv)

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sqlalchemy import or_, select

    from catalog import demo
    from catalog.models import Policy, Tag
    from core import migrate
    from core.codes import industry_name
    from core.config import get_settings
    from core.db import Database
    from core.text import normalize
    from matcher import engine, vectors
    from matcher.embeddings import compose_enterprise_text
    from matcher.evaluation import _relevance, load_eval_set
    from profiles import demo as profiles_demo
    from profiles.models import Enterprise, EnterpriseQualification

    cases = load_eval_set()["need_cases"]
    with tempfile.TemporaryDirectory(prefix="huiqi-profile-text-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'demo.db'}"
        database = Database(url)
        migrate.upgrade(url=url)
        with database.session() as db:
            demo.load_demo_catalog(db=db, actor=None)
            profiles_demo.load_demo_enterprises(db=db, count=args.firms)
        settings = get_settings().model_copy(
            update={"database_url": url, "var_dir": Path(tmp) / "var", "models_dir": Path(tmp) / "models"}
        )
        matcher = engine.Matcher(settings)
        try:
            with database.session() as db:
                index = matcher.policy_index(db)
                ids = index.ids().tolist()
                titles = {p.id: normalize(p.title) for p in db.scalars(select(Policy).where(Policy.id.in_(ids)))}
                passages = np.stack([index.faiss_index.reconstruct(int(i)) for i in ids])
                eids = list(db.scalars(select(Enterprise.id).order_by(Enterprise.id)))
                rows = {
                    r.id: r
                    for r in db.execute(
                        select(
                            Enterprise.id,
                            Enterprise.industry_code,
                            Enterprise.business_scope,
                            Enterprise.products,
                            Enterprise.needs,
                        )
                    )
                }
                quals: dict[int, list[str]] = {}
                for eid, name in db.execute(
                    select(EnterpriseQualification.enterprise_id, Tag.name)
                    .join(Tag, Tag.id == EnterpriseQualification.tag_id)
                    .where(
                        or_(
                            EnterpriseQualification.valid_until_on.is_(None),
                            EnterpriseQualification.valid_until_on >= dt.date.today(),
                        )
                    )
                    .order_by(EnterpriseQualification.id)
                ):
                    quals.setdefault(eid, []).append(name)

            def profile(eid: int, needs: str | None) -> str:
                r = rows[eid]
                return compose_enterprise_text(
                    industry=industry_name(r.industry_code) if r.industry_code else None,
                    business_scope=r.business_scope,
                    products=r.products,
                    needs=needs,
                    qualifications=quals.get(eid, []),
                )

            def score(query_vectors: np.ndarray) -> dict[str, float]:
                out = []
                for case, v in zip(cases, query_vectors, strict=True):
                    order = np.argsort(-(passages @ v), kind="stable")
                    ranked = [titles[ids[j]] for j in order]
                    out.append(_relevance(ranked, {normalize(t) for t in case["relevant"]}, 5))
                return {k: round(float(np.mean([o[k] for o in out])), 4) for k in ("hit_at_1", "recall_at_k", "mrr")}

            with_needs = [e for e in eids if rows[e].needs]
            queries = [c["query"] for c in cases]
            tfidf = TfidfVectorizer(analyzer="char", ngram_range=(1, 2)).fit(
                [rows[e].needs for e in with_needs] + queries
            )
            alike = (tfidf.transform(queries) @ tfidf.transform([rows[e].needs for e in with_needs]).T).toarray()
            rng = np.random.default_rng(args.seed)
            needs_vectors = matcher.encode(queries, "query")
            result: dict[str, Any] = {
                "cases": len(cases),
                "firms": args.firms,
                "needs query alone": score(needs_vectors),
            }
            for how in ("most alike firm", "random firm"):
                if how == "most alike firm":
                    firms = [with_needs[int(np.argmax(alike[i]))] for i in range(len(cases))]
                else:
                    firms = [with_needs[int(rng.integers(len(with_needs)))] for _ in cases]
                current = matcher.encode([profile(f, c["query"]) for f, c in zip(firms, cases, strict=True)], "query")
                without = matcher.encode([profile(f, None) for f in firms], "query")
                result[how] = {
                    "current: profile with needs + needs vector": score(vectors.blend(current, needs_vectors)),
                    "profile without needs + needs vector": score(vectors.blend(without, needs_vectors)),
                    "profile with needs alone": score(current),
                }
        finally:
            matcher.close()
            database.dispose()
    for key, value in result.items():
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            for name, metrics in value.items():
                print(f"{key}: {name:45s} {metrics}")
        else:
            print(f"{key}: {value}")
    write_result("profile_text", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
