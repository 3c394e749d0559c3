"""Full text of a policy document, with its structure (章 / 条 / numbered items), from untrusted bytes.

The type is sniffed from the content (magic bytes), never from the file name. Every refusal is a
ValidationFailed with a stable `intake.*` code and a Chinese message: scanned PDF without a text
layer, encrypted PDF, oversized file, wrong type, and zip bombs (DOCX or a zip batch whose members
would inflate past the cap or are too many).
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from core.errors import FieldError, PayloadTooLarge, ValidationFailed

# Kinds of document this module reads.
PDF, DOCX, HTML, TEXT = "pdf", "docx", "html", "text"


@dataclass(frozen=True)
class Limits:
    """Caps on one upload: its size, and what a zip (DOCX or batch) may inflate to."""

    max_bytes: int = 20 * 1024 * 1024
    max_unzipped_bytes: int = 100 * 1024 * 1024
    max_members: int = 200
    max_pages: int = 500

    @classmethod
    def from_settings(cls, settings: Any) -> Limits:
        return cls(
            max_bytes=settings.intake_max_mb * 1024 * 1024,
            max_unzipped_bytes=settings.intake_max_unzipped_mb * 1024 * 1024,
            max_members=settings.intake_max_members,
            max_pages=settings.intake_max_pages,
        )


@dataclass
class Section:
    """A heading of the document and the text under it (up to the next heading of any level)."""

    level: int  # 1 章, 2 条 / 一、, 3 （一）, 4 1. / 1、, 5 （1）
    heading: str
    text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "heading": self.heading, "text": self.text}


@dataclass
class Document:
    """The extracted text of one file."""

    filename: str
    kind: str
    text: str
    sections: list[Section] = field(default_factory=list)
    pages: int | None = None
    original: bytes = field(default=b"", repr=False)  # the file as uploaded (kept as the policy's 政策原文)

    def as_dict(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "kind": self.kind,
            "pages": self.pages,
            "chars": len(self.text),
            "sections": [s.as_dict() for s in self.sections],
        }


def _fail(code: str, message: str, reason: str | None = None, filename: str = "") -> ValidationFailed:
    where = f"file:{filename}" if filename else "file"
    return ValidationFailed(message, code=code, errors=[FieldError(where, reason or message, code)])


# ---------------------------------------------------------------- sniffing

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_HTML_START = re.compile(
    rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|meta|div|p|table|h[1-6])\b", re.I | re.S
)


def sniff(data: bytes) -> str:
    """Return what the bytes are: "pdf", "zip", "html", "text"; raise intake.unsupported_file otherwise."""
    head = data[:2048]
    if head.startswith(b"%PDF-") or (b"%PDF-" in head[:1024] and not head.startswith(b"PK")):
        return PDF
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(_OLE):
        raise _fail(
            "file.unsupported_file",
            "不支持旧版 Word（.doc）或 Excel 文件，请另存为 DOCX 或 PDF 后上传",
            "文件内容为 OLE 复合文档（.doc/.xls）",
        )
    body = head.lstrip(b"\xef\xbb\xbf")
    if _HTML_START.match(body):
        return HTML
    if b"\x00" in head or _binary(head):
        raise _fail(
            "file.unsupported_file",
            "不支持的文件类型，请上传 PDF、DOCX、HTML 或 TXT 格式的政策文件",
            "文件内容不是 PDF、DOCX、HTML 或纯文本",
        )
    return TEXT


def _binary(head: bytes) -> bool:
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    return controls > len(head) // 20 + 1


# ---------------------------------------------------------------- zip safety


def safe_members(data: bytes, limits: Limits, label: str) -> dict[str, bytes]:
    """Inflate a zip with the caps enforced while reading (declared sizes are not trusted)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _fail("file.bad_file", f"{label}已损坏，无法解压", "zip 结构无效") from exc
    infos = [i for i in archive.infolist() if not i.is_dir()]
    if len(infos) > limits.max_members:
        raise _fail(
            "file.zip_bomb",
            f"{label}包含 {len(infos)} 个文件，超过上限 {limits.max_members} 个",
            "压缩包文件数超过上限",
        )
    cap = limits.max_unzipped_bytes
    if sum(i.file_size for i in infos) > cap:
        raise _fail("file.zip_bomb", f"{label}解压后超过 {cap // (1024 * 1024)} MB，已拒绝", "解压后体积超过上限")
    out: dict[str, bytes] = {}
    total = 0
    try:
        for info in infos:
            if info.flag_bits & 0x1:
                raise _fail("file.encrypted_file", f"{label}已加密，请解密后再上传", "压缩包带密码")
            chunks = []
            with archive.open(info) as fh:
                while True:
                    chunk = fh.read(1 << 16)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > cap:
                        raise _fail(
                            "file.zip_bomb",
                            f"{label}解压后超过 {cap // (1024 * 1024)} MB，已拒绝",
                            "解压后体积超过上限",
                        )
                    chunks.append(chunk)
            out[info.filename] = b"".join(chunks)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise _fail("file.bad_file", f"{label}已损坏，无法解压", str(exc)[:200]) from exc
    return out


def _is_docx(members: dict[str, bytes]) -> bool:
    return "word/document.xml" in members


# ---------------------------------------------------------------- readers


def _read_pdf(data: bytes, limits: Limits, filename: str) -> tuple[str, int]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # An owner password only restricts printing: the empty user password opens it.
            try:
                opened = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - unknown crypto: treat as locked
                opened = False
            if not opened:
                raise _fail(
                    "file.encrypted_pdf",
                    "PDF 文件已加密，无法读取正文，请上传未加密的文件",
                    "PDF 需要密码才能打开",
                    filename,
                )
        pages = len(reader.pages)
        if pages > limits.max_pages:
            raise _fail("file.too_many_pages", f"PDF 共 {pages} 页，超过上限 {limits.max_pages} 页", filename=filename)
        texts = [page.extract_text() or "" for page in reader.pages]
    except ValidationFailed:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise _fail("file.bad_file", "PDF 文件已损坏，无法读取", str(exc)[:200], filename) from exc
    text = reflow_pages(texts)
    visible = sum(1 for ch in text if not ch.isspace())
    if visible < max(20, 10 * pages):
        raise _fail(
            "file.no_text_layer",
            "PDF 没有可提取的文字（可能是扫描件），请上传带文字层的 PDF 或 Word 文件",
            f"共 {pages} 页，只提取到 {visible} 个字符",
            filename,
        )
    return text, pages


# A line that is only a page number: "- 3 -", "— 3 —", "3", "第 3 页", "第3页 共10页".
_PAGE_NUMBER = re.compile(r"^[-—–－\s]*\d{1,4}[-—–－\s]*$|^第\s*\d{1,4}\s*页(?:\s*[,，/]?\s*共\s*\d{1,4}\s*页)?$")
_SENTENCE_END = tuple("。！？；：!?;:")
# The end of a document's title (its first lines): ……的通知, ……实施细则, ……申报指南.
_TITLE_END = re.compile(r"(?:通知|意见|办法|细则|规定|规则|方案|指南|公告|通告|决定|批复|函|措施|政策|规程|要点)$")


def reflow_pages(pages: Sequence[str]) -> str:
    """Join a PDF's text lines back into paragraphs; return the text, one paragraph a line.

    A PDF holds lines as laid out, so a sentence wraps at the margin (……新材料产品销 / 售收入占……), and a
    condition split across two lines is misread. A line runs on into the next when it is full (as long
    as the page's full lines, within 3 characters), does not end a sentence or clause (。；：！？), and
    the next line is not a heading or numbered item, nor is it the end of the title (……的通知); across
    pages too, page-number lines dropped.
    Pages with too few lines to tell a full line keep their lines.
    """
    lines: list[tuple[str, int, int]] = []  # (line, its width, its page's full width; 0: unknown)
    for page in pages:
        kept = [line.rstrip() for line in page.split("\n")]
        widths = [(line, _width(line)) for line in kept if line.strip() and not _PAGE_NUMBER.match(line.strip())]
        lengths = sorted(w for _, w in widths if w >= 10)
        full = lengths[int(0.8 * (len(lengths) - 1))] if len(lengths) >= 5 else 0
        lines += [(line, w, full) for line, w in widths]
    out: list[str] = []
    joining = False
    for k, (line, width, full) in enumerate(lines):
        if joining:
            out[-1] += line.strip()  # no space: Chinese, a number or a web address cut at the margin
        else:
            out.append(line)
        nxt = lines[k + 1][0].strip() if k + 1 < len(lines) else ""
        stripped = line.strip()
        joining = bool(
            full
            and nxt
            and width >= full - 3
            and not stripped.endswith(_SENTENCE_END)
            and not (k < 3 and _TITLE_END.search(stripped))
            and heading_level(nxt) is None
            and not (len(nxt) <= 12 and BARE_HEADING.match(nxt))
        )
    return "\n".join(out)


def _width(line: str) -> int:
    """Characters of a line as laid out: a CJK character counts 2, a Latin letter, digit or space 1."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line.strip())


def _read_docx(data: bytes) -> str:
    import docx

    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append("".join(t.text or "" for t in child.iter() if t.tag.endswith("}t")))
        elif tag == "tbl":
            for row in child.iter():
                if row.tag.endswith("}tr"):
                    cells = []
                    for cell in row.iterchildren():
                        if cell.tag.endswith("}tc"):
                            cells.append("".join(t.text or "" for t in cell.iter() if t.tag.endswith("}t")))
                    lines.append("\t".join(cells))
    return "\n".join(lines)


class _HtmlText(HTMLParser):
    _BLOCK = {
        "p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "section", "article",
        "title", "ul", "ol", "dd", "dt", "blockquote", "pre", "hr",
    }  # fmt: skip
    _SKIP = {"script", "style", "noscript", "template", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.title: list[str] = []
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in self._SKIP:
            self.skip += 1
        if tag in self._BLOCK:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self._SKIP and self.skip:
            self.skip -= 1
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        elif not self.skip:
            self.parts.append(data)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_-]+)""", re.I)


def decode_text(data: bytes, filename: str = "") -> str:
    """Decode text bytes: BOM → UTF-8, else strict UTF-8, else GB18030 (which covers GBK and GB2312)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise _fail(
        "file.bad_encoding", "无法识别文件编码，请另存为 UTF-8 或 GBK 编码", "既不是 UTF-8 也不是 GB18030", filename
    )


def _read_html(data: bytes, filename: str) -> str:
    declared = _META_CHARSET.search(data[:4096])
    text: str | None = None
    if declared:
        name = declared.group(1).decode("ascii").lower()
        if name in ("gb2312", "gbk", "gb18030"):
            name = "gb18030"
        try:
            text = data.decode(name)
        except (LookupError, UnicodeDecodeError):
            text = None
    if text is None:
        text = decode_text(data, filename)
    parser = _HtmlText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


# ---------------------------------------------------------------- structure

_CN_NUM = "一二三四五六七八九十百零〇两"
HEADING_PATTERNS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(rf"^第[{_CN_NUM}\d]+章")),
    (2, re.compile(rf"^第[{_CN_NUM}\d]+条")),
    (2, re.compile(rf"^[{_CN_NUM}]+[、.．]")),
    (3, re.compile(rf"^[（(][{_CN_NUM}]+[）)]")),
    (4, re.compile(r"^\d{1,2}(?:[、]|[.．](?!\d))")),
    (5, re.compile(r"^[（(]\d{1,2}[）)]")),
)


def heading_level(line: str) -> int | None:
    """Return the level of a line that starts a numbered heading or item, None for body text."""
    for level, pattern in HEADING_PATTERNS:
        if pattern.match(line):
            return level
    return None


def clean_text(text: str) -> str:
    """Normalise whitespace and full-width forms; keep one line per paragraph."""
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\u3000", " ").replace("\xa0", " ")
    lines = [re.sub(r"[ \t]+", " ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


# A web page's unnumbered heading on a line of its own: "申报条件", "申报材料", "事项描述", "联系方式".
BARE_HEADING = re.compile(
    r"^(?:申报|申请|支持|扶持|奖励|补贴|资助|奖补|政策|事项|办理|联系|适用|享受|认定|基本|项目|其他|评审|审核)"
    r"[\u4e00-\u9fa5]{0,4}?(?:条件|对象|主体|范围|材料|流程|程序|时间|方式|方向|内容|标准|描述|要求|依据|部门|地点|说明|事项)"
    r"\s*[:：]?$"
)


def split_sections(text: str) -> list[Section]:
    """Split text into sections at numbered headings (章, 条, 一、, （一）, 1., （1）) and at bare heading lines
    (申报条件, 申报材料 …) of a text's body, which open a section above numbered items."""
    sections: list[Section] = []
    current = Section(0, "")
    body: list[str] = []
    for i, line in enumerate(text.split("\n")):
        level = heading_level(line)
        if level is None and i > 0 and len(line) <= 12 and BARE_HEADING.match(line):
            level = 1
        if level is None:
            body.append(line)
            continue
        current.text = "\n".join(body).strip()
        if current.heading or current.text:
            sections.append(current)
        # A short heading stands alone; a long line is an item: heading is its first clause.
        head = re.split(r"[：:。；]", line, maxsplit=1)[0]
        current = Section(level, head[:80])
        body = [line]
    current.text = "\n".join(body).strip()
    if current.heading or current.text:
        sections.append(current)
    return sections


# ---------------------------------------------------------------- entry points


def extract(data: bytes, filename: str = "", limits: Limits | None = None) -> Document:
    """Read one policy document (not a batch): PDF, DOCX, HTML or plain text."""
    docs = extract_batch(data, filename, limits, allow_batch=False)
    return docs[0]


def extract_batch(
    data: bytes, filename: str = "", limits: Limits | None = None, *, allow_batch: bool = True
) -> list[Document]:
    """Read one document, or each document of a zip batch; refuse the whole upload on the first bad file."""
    limits = limits or Limits()
    if len(data) > limits.max_bytes:
        mb = limits.max_bytes // (1024 * 1024)
        raise PayloadTooLarge(
            f"文件超过 {mb} MB，请拆分后上传",
            code="file.too_large",
            errors=[FieldError("file", f"文件超过 {mb} MB", "file.too_large")],
        )
    if not data.strip():
        raise _fail("file.empty_file", "文件是空的", filename=filename)
    kind = sniff(data)
    if kind != "zip":
        return [_one(kind, data, filename, limits)]
    members = safe_members(data, limits, "压缩包" if not filename.lower().endswith(".docx") else "DOCX 文件")
    if _is_docx(members):
        return [_one(DOCX, data, filename, limits)]
    if not allow_batch:
        raise _fail("file.unsupported_file", "压缩包请按批量导入上传", "单个文件不能是 zip 压缩包", filename)
    docs: list[Document] = []
    for name, member in sorted(members.items()):
        base = name.rsplit("/", 1)[-1]
        if not base or base.startswith(".") or name.startswith("__MACOSX/"):
            continue
        member_kind = sniff(member)
        if member_kind == "zip":
            inner = safe_members(member, limits, f"压缩包内的 {base}")
            if not _is_docx(inner):
                raise _fail("file.unsupported_file", f"压缩包内的 {base} 又是压缩包，请解开后上传", filename=base)
            member_kind = DOCX
        docs.append(_one(member_kind, member, base, limits))
    if not docs:
        raise _fail("file.empty_file", "压缩包里没有政策文件", filename=filename)
    return docs


def _one(kind: str, data: bytes, filename: str, limits: Limits) -> Document:
    pages = None
    if kind == PDF:
        raw, pages = _read_pdf(data, limits, filename)
    elif kind == DOCX:
        try:
            raw = _read_docx(data)
        except Exception as exc:  # noqa: BLE001 - python-docx raises many shapes for broken files
            raise _fail("file.bad_file", "DOCX 文件已损坏，无法读取", str(exc)[:200], filename) from exc
    elif kind == HTML:
        raw = _read_html(data, filename)
    else:
        raw = decode_text(data, filename)
    text = clean_text(raw)
    if len(text) < 20:
        raise _fail("file.empty_file", "文件中没有可识别的政策正文", f"只有 {len(text)} 个字符", filename)
    return Document(filename=filename, kind=kind, text=text, sections=split_sections(text), pages=pages, original=data)
