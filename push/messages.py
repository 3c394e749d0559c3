"""Pieces every push message shares: the site paths it links to, absolute links, dates in Chinese."""

from __future__ import annotations

import datetime as dt

# Site paths the messages link to (made absolute with HUIQI_PUBLIC_BASE_URL).
POLICY_PATH = "/policies/{id}"
RECOMMENDATIONS_PATH = "/recommendations"
PROFILE_PATH = "/profile"
CASE_PATH = "/me/cases/{id}"
APPLICATIONS_PATH = "/me/applications"


def cn_date(day: dt.date | None) -> str:
    return f"{day.year}年{day.month}月{day.day}日" if day else "长期受理"


def link(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}{path}"
