"""JSON responses for hot routes: the body is built as plain data and serialised once with orjson.

Routes that use it still declare `response_model` for the OpenAPI schema; the tests validate the
bodies against it, so the hot path does not validate every response a second time.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


def json_response(data: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return data serialised by orjson (dates as ISO 8601, numpy scalars as numbers)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(content=body, status_code=status_code, media_type="application/json", headers=headers)
