"""Large synthetic policy sets for benchmarks, derived from the demo catalog's policies."""

from __future__ import annotations

import copy
import datetime as dt
import random
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from catalog import demo
from catalog.models import (
    Category,
    Department,
    Policy,
    PolicyRegion,
    PolicyStatus,
    Tag,
    policy_category,
    policy_tag,
)
from core.db import advance_id_sequences, table_of, utcnow
from core.text import normalize

# Regions synthetic policies are spread over (广东 cities and districts of the demo).
SYNTH_REGIONS = (
    "440000",
    "442000",
    "440100",
    "440106",
    "440112",
    "440300",
    "440305",
    "440600",
    "440604",
    "440605",
    "440606",
    "441900",
    "440400",
)


def _perturb(node: Any, rng: random.Random) -> Any:
    """Scale numeric thresholds by ±30% so synthetic rules differ from their template."""
    if isinstance(node, dict):
        out = {k: _perturb(v, rng) for k, v in node.items() if k != "value"}
        if "value" in node:
            value = node["value"]
            if node.get("field") == "region_code":
                out["value"] = [rng.choice(SYNTH_REGIONS)]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out["value"] = round(value * rng.uniform(0.7, 1.3), 1)
            else:
                out["value"] = copy.deepcopy(value)
        return out
    if isinstance(node, list):
        return [_perturb(v, rng) for v in node]
    return node


def synth_policies(
    *, db: Session, count: int, seed: int, batch_size: int = 2_000, progress: Callable[[int], None] | None = None
) -> int:
    """Insert `count` published synthetic policies modelled on the demo ones; return the count."""
    rng = random.Random(seed)
    today = dt.date.today()
    if not db.scalar(select(func.count()).select_from(Department)):
        demo.load_taxonomy(db=db)
    dept_ids = {d.code: d.id for d in db.scalars(select(Department))}
    cat_ids = {c.code: c.id for c in db.scalars(select(Category))}
    tag_ids = {t.name: t.id for t in db.scalars(select(Tag))}
    templates = [p for p in demo.demo_policies(today) if p.get("rules")]
    start = (db.scalar(select(func.max(Policy.id))) or 0) + 1
    now = utcnow()
    done = 0
    while done < count:
        rows: list[dict[str, Any]] = []
        regions: list[dict[str, Any]] = []
        cats: list[dict[str, int]] = []
        tags: list[dict[str, int]] = []
        for i in range(start + done, start + min(count, done + batch_size)):
            t = rng.choice(templates)
            title = f"{t['title']}（合成{i}）"
            region = rng.choice(SYNTH_REGIONS)
            rows.append(
                {
                    "id": i,
                    "title": title,
                    "issuing_department_id": dept_ids[t["issuing_department"]],
                    "handling_department_id": dept_ids.get(t.get("handling_department") or ""),
                    "level": t["level"],
                    "policy_type": t["policy_type"],
                    "summary": t.get("summary"),
                    "interpretation": t.get("interpretation"),
                    "interpreter_name": t.get("interpreter_name"),
                    "interpreter_contact": t.get("interpreter_contact"),
                    "apply_start_on": today - dt.timedelta(days=rng.randint(0, 60)),
                    "apply_end_on": today + dt.timedelta(days=rng.randint(1, 180)),
                    "valid_to_on": today + dt.timedelta(days=rng.randint(200, 900)),
                    "max_amount": t.get("max_amount"),
                    "amount_text": t.get("amount_text"),
                    "rules": _perturb(t["rules"], rng),
                    "status": PolicyStatus.published,
                    "pinned": False,
                    "version": 1,
                    "search_text": normalize(f"{title} {t.get('summary') or ''}").lower(),
                    "published_at": now,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            regions.append({"policy_id": i, "region_code": region})
            cats.extend({"policy_id": i, "category_id": cat_ids[c]} for c in dict.fromkeys(t.get("categories", [])))
            tags.extend(
                {"policy_id": i, "tag_id": tag_ids[n]} for n in dict.fromkeys(t.get("tags", [])) if n in tag_ids
            )
        db.execute(insert(table_of(Policy)), rows)
        db.execute(insert(table_of(PolicyRegion)), regions)
        if cats:
            db.execute(insert(policy_category), cats)
        if tags:
            db.execute(insert(policy_tag), tags)
        done += len(rows)
        if progress:
            progress(len(rows))
    # Ids were assigned here, not drawn from the serial sequence: the next ordinary insert must not collide.
    advance_id_sequences(db, ("policy",))
    return done
