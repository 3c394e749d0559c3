"""Responses: JSON for hot routes, and stored files served as downloads.

JSON: the body is built as plain data and serialised once with orjson. Routes that use it still declare
`response_model` for the OpenAPI schema; the tests validate the bodies against it, so the hot path does
not validate every response a second time.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response
from fastapi.responses import StreamingResponse

from core.attachments import Attachment, open_blob
from core.config import Settings
from core.files import ATTACHMENT_TYPES, content_disposition


def json_response(data: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Return data serialised by orjson (dates as ISO 8601, numpy scalars as numbers)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return Response(content=body, status_code=status_code, media_type="application/json", headers=headers)


# The download routes' 200 answer, for the OpenAPI schema: one of the attachment types.
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "附件文件（以附件方式下载）",
        "content": {t.content_type: {"schema": {"type": "string", "format": "binary"}} for t in ATTACHMENT_TYPES},
    }
}


def download_response(*, settings: Settings, attachment: Attachment) -> StreamingResponse:
    """Stream a stored attachment as a download: its sniffed type, never shown inline, never sniffed again."""
    chunks = open_blob(settings=settings, attachment=attachment)  # a missing object fails here, before any byte
    return StreamingResponse(
        chunks,
        media_type=attachment.content_type,
        headers={
            "Content-Disposition": content_disposition(attachment.display_name),
            "Content-Length": str(attachment.size),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )
