"""The demo data (`huiqi demo`) has applications in every status and 免申即享 payouts, so the dashboard's
figures of applications and payouts are not empty."""

from __future__ import annotations

from sqlalchemy import func, select

from applications import demo as applications_demo
from applications import stats
from applications.models import Application, ApplicationStatus, ExemptEntry
from auth import demo as auth_demo
from auth.models import Role
from auth.service import principal_for_user
from catalog import demo as catalog_demo
from profiles import demo as profiles_demo
from push.models import Delivery
from tests import factories


def test_demo_applications_cover_every_status_and_pay_out(db) -> None:  # type: ignore[no-untyped-def]
    catalog_demo.load_demo_catalog(db=db, actor=None)
    profiles_demo.load_demo_enterprises(db=db, count=120)
    db.flush()
    auth_demo.create_demo_users(
        db=db, department_ids=catalog_demo.department_ids(db=db), firm_id=profiles_demo.demo_firm_id(db=db)
    )
    counts = applications_demo.load_demo_applications(db=db)
    assert counts["applications"] > 50 and counts["exempt_paid"] > 0
    statuses = set(db.scalars(select(Application.status).distinct()))
    assert statuses == {s.value for s in ApplicationStatus}
    assert db.scalar(select(func.count()).select_from(ExemptEntry).where(ExemptEntry.status == "excluded"))
    # The demo firm follows applications of its own and was told of their changes.
    firm_id = profiles_demo.demo_firm_id(db=db)
    assert db.scalar(select(func.count()).select_from(Application).where(Application.enterprise_id == firm_id)) >= 3
    assert db.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.enterprise_id == firm_id, Delivery.kind == "application")
    )
    # Loading again adds nothing.
    assert applications_demo.load_demo_applications(db=db) == {"applications": 0, "exempt_paid": 0}

    curator = principal_for_user(factories.make_user(db, role=Role.curator))
    figures = stats.figures(db=db, actor=curator)
    assert figures["totals"]["amount_paid"] > 0 and figures["totals"]["median_days_to_payout"] > 0
    assert figures["totals"]["approval_rate"] is not None and len(figures["departments"]) >= 2
