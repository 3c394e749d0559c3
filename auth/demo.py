"""Demo users for every role, with the passwords README lists (development only)."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from auth import service
from auth.models import Role, User
from auth.schemas import UserIn

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


def create_demo_users(*, db: Session, department_ids: Mapping[str, int], firm_id: int | None) -> list[User]:
    """Create the demo users that do not exist yet; desk officers get their departments, the firm user `firm_id`."""
    created = []
    for username, password, name, role, dept_code in DEMO_USERS:
        if service.get_user_by_username(db=db, username=username):
            continue
        dept_id = None
        if dept_code:
            dept_id = department_ids.get(dept_code)
            if dept_id is None:
                continue
        enterprise_id = firm_id if role == Role.enterprise else None
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
