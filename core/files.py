"""File helpers: atomic writes of generated artefacts (indexes, models, manifests), and uploaded files'
types told by their content and names made safe to show and serve."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote


def atomic_write(path: Path, data: bytes | memoryview | BinaryIO) -> None:
    """Write a file (bytes, or a stream copied in chunks) so that readers see the old or the new content,
    never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes | memoryview):
                fh.write(data)
            else:
                shutil.copyfileobj(data, fh, 64 * 1024)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- uploaded files: type by content, safe names


@dataclass(frozen=True)
class FileType:
    """A file type attachments may have, as its content says."""

    label: str  # for people
    content_type: str
    extensions: tuple[str, ...]  # the first is the canonical one

    @property
    def extension(self) -> str:
        """Return the canonical extension (with its dot)."""
        return self.extensions[0]


PDF = FileType("PDF", "application/pdf", (".pdf",))
DOCX = FileType(
    "Word 文档（.docx）", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", (".docx",)
)
XLSX = FileType("Excel 表格（.xlsx）", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", (".xlsx",))
PNG = FileType("PNG 图片", "image/png", (".png",))
JPEG = FileType("JPEG 图片", "image/jpeg", (".jpg", ".jpeg"))
ATTACHMENT_TYPES = (PDF, DOCX, XLSX, PNG, JPEG)
ALLOWED_TEXT = "PDF、Word（.docx）、Excel（.xlsx）、PNG 或 JPEG 图片"

# An OOXML package's [Content_Types].xml names its main part; read at most this much of it.
_CONTENT_TYPES_MAX = 512 * 1024
_DOCX_MAIN = b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
_XLSX_MAIN = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"


def _ooxml_type(data: bytes) -> FileType | None:
    """Tell a .docx from a .xlsx by its members and its [Content_Types].xml; anything else is None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "[Content_Types].xml" not in names:
                return None
            with archive.open("[Content_Types].xml") as fh:
                declared = fh.read(_CONTENT_TYPES_MAX)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, RuntimeError, ValueError, NotImplementedError):
        return None
    if any(n.startswith("word/") for n in names) and _DOCX_MAIN in declared:
        return DOCX
    if any(n.startswith("xl/") for n in names) and _XLSX_MAIN in declared:
        return XLSX
    return None


def sniff_type(data: bytes) -> FileType | None:
    """Return the file's type from its bytes (magic numbers, OOXML members), or None when not allowed."""
    if data.startswith(b"%PDF-"):
        return PDF
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"PK\x03\x04"):
        return _ooxml_type(data)
    return None


NAME_MAX = 120
_UNSAFE_NAME_CHARS = re.compile(r'[<>:"|?*\\/]')


def safe_display_name(name: str | None, file_type: FileType | None = None) -> str:
    """Return a name fit to show and to offer for saving: no path parts, no control or format characters
    (CR/LF, NUL, bidi overrides), no leading dots, at most NAME_MAX characters with the extension kept;
    an empty result becomes 附件 plus the type's extension."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]  # the last path part, whatever the client's separator
    text = "".join(" " if ch.isspace() else ch for ch in text)  # CR, LF, tabs: one space
    text = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    text = _UNSAFE_NAME_CHARS.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip().lstrip(".").strip()
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > 10:
        stem, ext = text, ""
    if not stem.strip(" ._"):
        stem = "附件"
    ext = f".{ext}" if ext else (file_type.extension if file_type else "")
    return stem[: NAME_MAX - len(ext)].rstrip() + ext


def name_extension(name: str) -> str:
    """Return the lowercased extension of a name (with its dot), or ''."""
    stem, dot, ext = name.rpartition(".")
    return f".{ext.lower()}" if dot and stem else ""


def content_disposition(name: str, *, inline: bool = False) -> str:
    """Return a Content-Disposition header for a download: an ASCII fallback and the UTF-8 name (RFC 5987/6266)."""
    fallback = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "_" for ch in name).strip("_")
    ext = name_extension(name)
    if not fallback.strip("._") or fallback == ext.strip("_"):
        fallback = "attachment" + ext
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
