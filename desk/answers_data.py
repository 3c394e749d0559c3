"""Load FAQ entries from a JSON file into the knowledge base (held-out evaluation sets, a city's own FAQ).

Each item: ``code``, ``question``, ``answer`` and optionally ``keywords`` and ``related_policies``
(policy titles). Entries go through `desk.faq.create_faq`, so they are validated as the API validates them.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.orm import Session

from desk.faq import create_faq
from desk.models import FaqEntry
from desk.schemas import FaqIn


def load_faq(db: Session, path: Path) -> list[FaqEntry]:
    """Create the FAQ entries of a JSON list in `db` (site-wide, curated); return them."""
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for item in items:
        faq_in = FaqIn(
            code=item["code"],
            question=item["question"],
            answer=item["answer"],
            keywords=item.get("keywords") or [],
            related_policies=item.get("related_policies") or [],
        )
        out.append(create_faq(db=db, actor=None, faq_in=faq_in))
    db.flush()
    return out
