"""Guards for JSON that users send: nesting depth and NUL characters, checked without recursion.

Deeply nested input must be refused before anything recursive touches it (copy.deepcopy,
json.dumps, a schema validator): 400 levels raise RecursionError, a 500. PostgreSQL cannot store
NUL in text, so a NUL anywhere in a text field is refused up front with the field's name.
"""

from __future__ import annotations

import json
from typing import Any

# No document of ours comes close: eight levels of rule nodes are about eighteen of JSON.
MAX_NESTING = 40


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def nesting(value: Any, *, stop_past: int = MAX_NESTING) -> tuple[int, str]:
    """Return how deeply containers nest in value (stopping once past `stop_past`) and the deepest path."""
    deepest, where = 0, ""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        obj, path, level = stack.pop()
        if isinstance(obj, dict):
            children = list(obj.items())
        elif isinstance(obj, list | tuple):
            children = list(enumerate(obj))
        else:
            continue
        if level > deepest:
            deepest, where = level, path
            if deepest > stop_past:
                break
        stack.extend((v, _join(path, k), level + 1) for k, v in children if isinstance(v, dict | list | tuple))
    return deepest, where


def too_deep(value: Any, *, limit: int = MAX_NESTING) -> str | None:
    """Return a Chinese reason when value nests deeper than limit, else None."""
    depth, _ = nesting(value, stop_past=limit)
    if depth > limit:
        return f"嵌套层级过深（超过 {limit} 层）"
    return None


def loads(text: str | bytes) -> Any:
    """json.loads that raises ValueError (never RecursionError) for absurdly nested text."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON 嵌套层级过深（超过 {MAX_NESTING} 层）") from None


def find_nul(value: Any, root: str = "") -> str | None:
    """Return the path of the first string (value or key) holding a NUL character, else None."""
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, str):
            if "\x00" in obj:
                return path or "body"
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if isinstance(k, str) and "\x00" in k:
                    return _join(path, k.replace("\x00", "\\u0000"))
                stack.append((v, _join(path, k)))
        elif isinstance(obj, list | tuple):
            stack.extend((v, _join(path, i)) for i, v in enumerate(obj))
    return None
