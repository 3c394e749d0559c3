"""A firm user's enterprise is narrowed once, with a 403 instead of a None reaching the services."""

from __future__ import annotations

import pytest

from auth.models import Role
from auth.service import Principal
from core.errors import PermissionDenied


def test_own_enterprise_id_is_the_bound_firm() -> None:
    assert Principal(id=1, role=Role.enterprise, name="企业", enterprise_id=7).own_enterprise_id == 7


def test_own_enterprise_id_refuses_a_caller_bound_to_no_firm() -> None:
    with pytest.raises(PermissionDenied) as caught:
        _ = Principal(id=2, role=Role.enterprise, name="企业").own_enterprise_id
    assert caught.value.status_code == 403
    assert caught.value.code == "auth.no_enterprise"
