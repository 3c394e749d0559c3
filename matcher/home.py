"""The platform's home city (HUIQI_HOME_REGION): on equal relevance, its own and nationwide policies first."""

from __future__ import annotations

from collections.abc import Sequence

from core import codes


def home_rank(region_codes: Sequence[str] | None, home_region: str | None) -> int:
    """Return 0 for a nationwide policy or one of the home city (or its districts), 1 otherwise.

    Used only to order policies whose scores tie; never to leave one out (that is `applicable`'s job).
    """
    if not region_codes or codes.NATIONAL_REGION in region_codes:
        return 0
    if not home_region:
        return 1
    for code in region_codes:
        try:
            if codes.region_contains(home_region, code):
                return 0
        except ValueError:
            continue
    return 1


def applies_to(region_codes: Sequence[str] | None, region: str) -> bool:
    """Tell whether a policy of these regions may be offered to a firm of `region` (nationwide, or a region
    containing the firm's); a 广州 policy never applies to a 中山 firm."""
    if not region_codes or codes.NATIONAL_REGION in region_codes:
        return True
    for code in region_codes:
        try:
            if codes.region_contains(code, region):
                return True
        except ValueError:
            continue
    return False
