"""Policy intake for the API and the CLI: catalog's intake plus tag proposals from the matcher's vocabulary.

Tags are proposed here, above both layers: catalog may not import the matcher.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from auth.service import Principal
from catalog.intake import service as intake_service
from catalog.intake.extract import Limits
from core.config import Settings
from matcher.tags import policy_tag_suggester


def run_intake(
    *,
    db: Session,
    settings: Settings,
    files: list[tuple[str, bytes]],
    actor: Principal | None,
    department: str | None = None,
) -> list[dict[str, Any]]:
    """Create draft policies from the files; return each draft with its proposals."""
    results = intake_service.intake_files(
        db=db,
        files=files,
        actor=actor,
        department=department,
        limits=Limits.from_settings(settings),
        suggest_tags=policy_tag_suggester(db),
    )
    return [r.as_dict() for r in results]
