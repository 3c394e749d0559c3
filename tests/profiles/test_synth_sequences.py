"""Bulk loaders write explicit ids; on PostgreSQL they must leave the id sequences past them, so that the
ordinary services (a curator's new policy, a firm registering) can insert afterwards."""

from __future__ import annotations

from sqlalchemy import func, select, text

from catalog.models import Policy
from catalog.synth import synth_policies
from profiles.models import Enterprise, EnterpriseQualification
from profiles.synth import synth_enterprises
from tests import factories
from tests.support.pg_schema import demo_schema


def test_services_insert_after_the_synthetic_loaders_on_postgresql() -> None:
    with demo_schema("hq_synth_seq", firms=20, needs="sequence checks") as (database, _url):
        with database.session() as db:
            synth_policies(db=db, count=40, seed=3)
        synth_enterprises(engine=database.engine, count=300, seed=3, batch_size=120)
        with database.session() as db:
            top_policy = db.scalar(select(func.max(Policy.id)))
            top_firm = db.scalar(select(func.max(Enterprise.id)))
            top_qualification = db.scalar(select(func.max(EnterpriseQualification.id)))
            assert top_policy and top_firm and top_qualification
            # The sequences sit past every loaded id (a loader that forgot would leave them at the demo's).
            for table, top in (
                ("policy", top_policy),
                ("enterprise", top_firm),
                ("enterprise_qualification", top_qualification),
            ):
                seq = db.scalar(text(f"SELECT pg_get_serial_sequence('{table}', 'id')"))
                last, called = db.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
                assert (last if called else last - 1) >= top, table

        # The normal services: a policy drafted and published, a firm created with a qualification.
        with database.session() as db:
            policy = factories.make_policy(db, publish=True, announce=False)
            firm = factories.make_enterprise(db, qualifications=[{"name": "高新技术企业"}])
            assert policy.id > top_policy and firm.id > top_firm
            assert [q.id for q in firm.qualifications] and min(q.id for q in firm.qualifications) > top_qualification
        with database.session() as db:
            assert db.get(Policy, policy.id) is not None and db.get(Enterprise, firm.id) is not None
            assert db.scalar(select(func.count()).select_from(Policy)) == db.scalar(
                select(func.count(func.distinct(Policy.id)))
            )
