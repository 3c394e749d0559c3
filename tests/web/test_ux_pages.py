"""Issue 14: page defects a new user met, checked on the served HTML (the browser checks are in test_browser_ux.py)."""

from __future__ import annotations

import re
from typing import Any

from tests import factories


def test_a_tag_named_like_a_category_shows_one_chip_on_the_policy_page(db: Any, client: Any) -> None:
    """Item 8: 租金减免 was both the policy's category and its tag, and appeared twice."""
    category = factories.make_category(db, name="租金减免")
    factories.make_tag(db, name="租金减免")
    factories.make_tag(db, name="小微企业")
    policy = factories.make_policy(db, publish=True, category=category, tags=["租金减免", "小微企业"])
    page = client.get(f"/policies/{policy.id}")
    assert page.status_code == 200
    chips = re.findall(r'class="chip[^"]*"[^>]*>([^<]+)<', page.text)
    assert chips.count("租金减免") == 1 and chips.count("小微企业") == 1
