"""Demo users for every role, with the passwords README lists (development only)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from auth import service
from auth.models import Role, User
from auth.schemas import UserIn
from catalog.models import Department
from profiles.models import Enterprise

# (username, password, display name, role, department code) — documented in README.
DEMO_USERS = (
    ("admin", "Huiqi@admin2026", "系统管理员", Role.admin, None),
    ("curator", "Huiqi@curator2026", "政策管理员王芳", Role.curator, None),
    ("supervisor", "Huiqi@super2026", "督办专员陈刚", Role.supervisor, None),
    ("desk_kjj", "Huiqi@desk2026", "市科技局专员林晓", Role.desk, "zs-kjj"),
    ("desk_gxj", "Huiqi@desk2026", "市工信局专员黄磊", Role.desk, "zs-gxj"),
    ("desk_rsj", "Huiqi@desk2026", "市人社局专员周婷", Role.desk, "zs-rsj"),
    ("firm", "Huiqi@firm2026", "企业用户李明", Role.enterprise, None),
)


def create_demo_users(*, db: Session) -> list[User]:
    """Create the demo users that do not exist yet; the firm user gets the first demo enterprise."""
    created = []
    # The demo firm user gets a complete 中山 profile, so recommendations have something to work with.
    first_firm = db.scalar(
        select(Enterprise)
        .where(Enterprise.region_code == "442000", Enterprise.completeness == 100)
        .order_by(Enterprise.id)
        .limit(1)
    ) or db.scalar(select(Enterprise).order_by(Enterprise.id).limit(1))
    for username, password, name, role, dept_code in DEMO_USERS:
        if service.get_user_by_username(db=db, username=username):
            continue
        dept_id = None
        if dept_code:
            dept = db.scalar(select(Department).where(Department.code == dept_code))
            if dept is None:
                continue
            dept_id = dept.id
        enterprise_id = first_firm.id if role == Role.enterprise and first_firm else None
        if role == Role.enterprise and enterprise_id is None:
            continue
        created.append(
            service.create_user(
                db=db,
                user_in=UserIn(
                    username=username,
                    password=password,
                    display_name=name,
                    role=role,
                    department_id=dept_id,
                    enterprise_id=enterprise_id,
                ),
            )
        )
    return created
