"""Every error code the product raises is namespaced by its package and listed in docs/errors.md."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from core import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "auth", "catalog", "profiles", "matcher", "push", "applications", "desk", "web", "api")
NAMESPACES = {"auth", "catalog", "profiles", "matcher", "push", "applications", "desk", "file"}
COMMON_CODES = {"integrity_error", "nul_character"}  # raised by the request guards; the same everywhere


def _error_classes(trees: list[ast.Module]) -> set[str]:
    """Names of HuiqiError and of every class defined in product code that derives from one of them."""
    names = {
        cls.__name__ for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.HuiqiError)
    }
    grew = True
    while grew:
        grew = False
        for tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names:
                    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                    if bases & names:
                        names.add(node.name)
                        grew = True
    return names


def _raised_codes() -> dict[str, str]:
    parsed = [
        (path, ast.parse(path.read_text(encoding="utf-8")))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    ]
    classes = _error_classes([tree for _, tree in parsed])
    found: dict[str, str] = {}
    for path, tree in parsed:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name not in classes:
                continue
            for keyword in node.keywords:
                if keyword.arg == "code" and isinstance(keyword.value, ast.Constant):
                    found[str(keyword.value.value)] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_the_scan_sees_the_codes_it_should() -> None:
    codes = _raised_codes()
    # A scan that finds nothing would pass everything below.
    assert "catalog.policy_not_found" in codes
    assert len(codes) >= 40


def test_every_raised_code_is_namespaced_by_its_package() -> None:
    bad = {
        code: where
        for code, where in _raised_codes().items()
        if code not in COMMON_CODES and ("." not in code or code.split(".", 1)[0] not in NAMESPACES)
    }
    assert not bad, f"codes without a package namespace: {bad}"


def test_every_raised_code_is_documented() -> None:
    documented = set(
        re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs" / "errors.md").read_text(encoding="utf-8"), re.M)
    )
    missing = {code: where for code, where in _raised_codes().items() if code not in documented}
    assert not missing, f"add these codes to docs/errors.md: {missing}"


def test_common_codes_are_documented() -> None:
    documented = set(
        re.findall(r"^\| `([a-z_.]+)` \|", (ROOT / "docs" / "errors.md").read_text(encoding="utf-8"), re.M)
    )
    common = {cls.code for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.HuiqiError)}
    assert common | COMMON_CODES <= documented, (common | COMMON_CODES) - documented
