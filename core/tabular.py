"""Spreadsheet import and export: reading CSV/XLSX into rows, writing them back, and the import report.

Domain layouts (which column holds what) live beside each domain in ``catalog/io.py`` and
``profiles/io.py``; this module knows only cells. See docs/import-format.md for the user side.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import unicodedata
import zipfile
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import jsonsafe
from core.errors import Conflict, FieldError, HuiqiError, ValidationFailed, pydantic_field_errors

ExportFormat = Literal["csv", "xlsx"]

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_UTF8_BOM = b"\xef\xbb\xbf"
# A cell starting with one of these is a formula to Excel; exports defuse them with a leading apostrophe.
_FORMULA_TRIGGERS = frozenset("=+-@\t\r")


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class TableRow:
    """One data row: its 1-based spreadsheet row number (the header is row 1) and its cells by header."""

    number: int
    cells: dict[str, str]


@dataclass(frozen=True)
class Table:
    """A read table: its headers in file order and its non-blank data rows."""

    headers: list[str]
    rows: list[TableRow]


@dataclass(frozen=True)
class Limits:
    """How big a file read_table reads before refusing it (HUIQI_IMPORT_MAX_ROWS / _COLUMNS)."""

    rows: int
    columns: int

    @classmethod
    def from_settings(cls, settings: Any = None) -> Limits:
        if settings is None:
            from core.config import get_settings

            settings = get_settings()
        return cls(rows=settings.import_max_rows, columns=settings.import_max_columns)


def _too_big(what: str, limit: int, code: str) -> ValidationFailed:
    reason = f"文件超过 {limit} {what}的上限，请拆分后分批导入"
    return ValidationFailed(reason, code=code, errors=[FieldError("file", reason, code)])


def read_table(data: bytes, filename: str, *, limits: Limits | None = None) -> Table:
    """Read a CSV or XLSX file: the first row is the header, blank rows are skipped, cells are stripped text.

    A file with more rows (beyond the header) or columns than `limits` is refused (422) as soon as
    the reader meets the first one too many; empty trailing cells and rows do not count.
    """
    limits = limits or Limits.from_settings()
    kind = _file_kind(filename)
    records = _csv_records(data, limits) if kind == "csv" else _xlsx_records(data, limits)
    header_at = next((i for i, rec in enumerate(records) if any(rec)), None)
    if header_at is None:
        raise ValidationFailed("文件是空的，没有表头", code="file.empty_file")
    if header_at != 0:
        raise ValidationFailed("第 1 行应为表头，不能为空行", code="file.bad_header")
    headers = records[0]
    while headers and not headers[-1]:
        headers = headers[:-1]
    errors = []
    seen: dict[str, int] = {}
    for i, header in enumerate(headers, start=1):
        if not header:
            errors.append(FieldError(f"第 {i} 列", "表头为空", "empty_header"))
        elif header in seen:
            errors.append(FieldError(header, f"与第 {seen[header]} 列表头重复", "duplicate_header"))
        else:
            seen[header] = i
    rows = []
    for number, record in enumerate(records[1:], start=2):
        if not any(record):
            continue
        if len(record) > len(headers) and any(record[len(headers) :]):
            errors.append(FieldError(f"第 {number} 行", "数据列数多于表头列数", "extra_cells"))
            continue
        cells = {h: (record[i] if i < len(record) else "") for i, h in enumerate(headers)}
        rows.append(TableRow(number=number, cells=cells))
    if errors:
        raise ValidationFailed("表格结构有误", code="file.bad_table", errors=errors)
    return Table(headers=list(headers), rows=rows)


def _file_kind(filename: str) -> Literal["csv", "xlsx"]:
    name = (filename or "").lower().strip()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".xlsx", ".xlsm")):
        return "xlsx"
    hint = "；旧版 .xls 请在 Excel 中另存为 .xlsx" if name.endswith(".xls") else ""
    raise ValidationFailed(
        f"不支持的文件类型，请上传 .csv 或 .xlsx 文件{hint}",
        code="file.unsupported_file",
        errors=[FieldError("file", "文件扩展名应为 .csv 或 .xlsx", "file.unsupported_file")],
    )


def decode_csv(data: bytes) -> str:
    """Decode CSV bytes: a BOM means UTF-8, else strict UTF-8, else GB18030 (what Excel in China writes)."""
    encodings = ("utf-8-sig",) if data.startswith(_UTF8_BOM) else ("utf-8", "gb18030")
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationFailed("无法识别文件编码，请另存为 UTF-8 或 GBK 编码的 CSV", code="file.bad_encoding")


class _Records(list[list[str]]):
    """The records read so far, refusing the file past the limits (empty trailing cells trimmed)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self.filled = 0

    def add(self, record: list[str]) -> None:
        while record and not record[-1]:
            record.pop()
        if len(record) > self.limits.columns:
            raise _too_big("列", self.limits.columns, "too_many_columns")
        for col, cell in enumerate(record, start=1):
            if "\x00" in cell:  # PostgreSQL cannot store it: refuse the file, naming the cell
                where = f"第 {len(self) + 1} 行第 {col} 列"
                reason = "含有不允许的空字符（\\u0000）"
                raise ValidationFailed(
                    f"{where}{reason}", code="nul_character", errors=[FieldError(where, reason, "nul_character")]
                )
        if record:
            self.filled += 1
        # The header plus `rows` data rows; blank rows count too past ten times the limit.
        if self.filled > self.limits.rows + 1 or len(self) >= 10 * self.limits.rows + 1:
            raise _too_big("行数据", self.limits.rows, "too_many_rows")
        self.append(record)


def _csv_records(data: bytes, limits: Limits) -> list[list[str]]:
    text = decode_csv(data)
    records = _Records(limits)
    try:
        for rec in csv.reader(io.StringIO(text, newline="")):
            records.add([unescape_cell(c.strip()) for c in rec])
    except csv.Error as exc:
        raise ValidationFailed(f"CSV 格式错误：{exc}", code="file.bad_file") from exc
    return records


def _xlsx_records(data: bytes, limits: Limits) -> list[list[str]]:
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ValidationFailed("无法读取 Excel 文件，请确认文件为 .xlsx 格式且未损坏", code="file.bad_file") from exc
    try:
        if not book.worksheets:
            raise ValidationFailed("Excel 文件没有工作表", code="file.empty_file")
        sheet = book.worksheets[0]
        # The file's own <dimension ref> is not trusted: a few KB declaring A1:XFD1048576 would have
        # every row padded to 16,384 cells. Rows are as long as their last stored cell instead.
        sheet.reset_dimensions()
        records = _Records(limits)
        # min_row=1 keeps numbering aligned with the sheet even when the first rows are empty.
        for values in sheet.iter_rows(min_row=1, values_only=True):
            records.add([cell_text(v) for v in values])
        while records and not any(records[-1]):
            records.pop()
        return records
    finally:
        book.close()


def cell_text(value: Any) -> str:
    """Return a spreadsheet cell as canonical text: dates YYYY-MM-DD, whole numbers without ".0"."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="seconds")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    return str(value).strip()


def unescape_cell(text: str) -> str:
    """Undo the apostrophe an export put before a formula-like cell ('=… → =…)."""
    if len(text) >= 2 and text[0] == "'" and (text[1] in _FORMULA_TRIGGERS or text[1] == "'"):
        return text[1:]
    return text


def escape_cell(text: str) -> str:
    """Prefix a formula-like cell with an apostrophe so Excel shows it as text (inverse of unescape_cell)."""
    if text[:1] in _FORMULA_TRIGGERS or unescape_cell(text) != text:
        return "'" + text
    return text


# Control characters an XLSX file cannot hold (openpyxl raises IllegalCharacterError on them); tab, LF
# and CR stay. Every writer drops them, so a pasted NUL or form feed never turns an export into a 500.
_ILLEGAL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Drop the control characters a spreadsheet cannot hold."""
    return _ILLEGAL_CHARS.sub("", text)


# ---------------------------------------------------------------- writing
#
# The one spreadsheet writer: every export and report (CSV and XLSX, here and in desk/stats.py)
# writes its cells through write_csv or append_row, so formula-like text is never live and no
# cell can make openpyxl refuse the file.


def write_csv(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    """Write a CSV in UTF-8 with a BOM (so Excel opens it correctly), CRLF line ends, formulas defused."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([escape_cell(clean_text(str(h))) for h in headers])
    for row in rows:
        writer.writerow([escape_cell(clean_text(cell_text(v))) for v in row])
    return _UTF8_BOM + out.getvalue().encode("utf-8")


def append_row(sheet: Any, values: Sequence[Any], *, text_format: bool = False) -> None:
    """Append one row to an openpyxl sheet: numbers, dates and booleans stay typed; text is always text.

    A text cell is stored as a string (never a formula, whatever it starts with); one led by a formula
    trigger (= + - @ tab CR) also gets Excel's quote prefix, so editing it in Excel keeps it text. With
    text_format the cells take the "@" (text) number format, so Excel keeps leading zeros when edited.
    """
    values = [clean_text(v) if isinstance(v, str) else v for v in values]
    sheet.append([None if v == "" else v for v in values])
    row = sheet.max_row
    for col, value in enumerate(values, start=1):
        cell = sheet.cell(row=row, column=col)
        if isinstance(value, str) and value:
            cell.data_type = "s"  # openpyxl took text led by "=" for a formula
            if value[:1] in _FORMULA_TRIGGERS:
                cell.quotePrefix = True
        if text_format:
            cell.number_format = "@"


def new_workbook() -> tuple[Workbook, Worksheet]:
    """Return a new workbook and its one worksheet."""
    book = Workbook()
    sheet = book.active
    if not isinstance(sheet, Worksheet):  # a new workbook always has one worksheet
        raise RuntimeError("openpyxl made a workbook without a worksheet")
    return book, sheet


def write_xlsx(headers: Sequence[str], rows: Iterable[Sequence[Any]], sheet_title: str) -> bytes:
    """Write an XLSX sheet of text cells: bold frozen header, widths fitted to the content."""
    book, sheet = new_workbook()
    sheet.title = _sheet_title(sheet_title)
    append_row(sheet, list(headers))
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    widths = [_display_width(h) for h in headers]
    for values in rows:
        texts = [cell_text(v) for v in values]
        append_row(sheet, texts, text_format=True)
        for col, text in enumerate(texts, start=1):
            if col <= len(widths):
                widths[col - 1] = max(widths[col - 1], _display_width(text))
    for col, width in enumerate(widths, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = min(max(width + 2, 8), 60)
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def write_template(columns: Sequence[Column], sample: dict[str, str], fmt: str, sheet_title: str) -> bytes:
    """Write an import template: the header and one sample row (replace it with real rows).

    XLSX files get a second sheet, 填写说明, listing each column with its format and the sample value;
    imports read only the first sheet. CSV files hold the header and the sample row.
    """
    headers = [c.header for c in columns]
    row = [sample.get(c.key, "") for c in columns]
    if fmt == "csv":
        return write_csv(headers, [row])
    data = write_xlsx(headers, [row], sheet_title)
    book = load_workbook(io.BytesIO(data))
    notes = book.create_sheet("填写说明")
    notes.append(["列名", "填写说明", "示例"])
    for cell in notes[1]:
        cell.font = Font(bold=True)
    for column, value in zip(columns, row, strict=True):
        notes.append([column.header, column.note or "文本", value or None])
    for letter, width in (("A", 22), ("B", 70), ("C", 40)):
        notes.column_dimensions[letter].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _sheet_title(title: str) -> str:
    # Excel forbids these characters and titles longer than 31 characters.
    return re.sub(r"[\\/*?:\[\]]", "_", title)[:31] or "Sheet1"


def _display_width(text: str) -> int:
    line = max((text or "").splitlines() or [""], key=len)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


# ---------------------------------------------------------------- cell values


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def format_number(value: float | int | None) -> str:
    """Format a number without trailing zeros or exponent (30 → "30", 12.5 → "12.5")."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = format(Decimal(repr(value)), "f") if isinstance(value, float) else str(value)
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_number(text: str) -> float:
    """Parse a decimal number; thousands separators and full-width digits are accepted."""
    raw = _nfkc(text).replace(",", "").replace(" ", "")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"「{text}」不是有效的数字") from None
    if not value.is_finite():
        raise ValueError(f"「{text}」不是有效的数字")
    return float(value)


def parse_int(text: str) -> int:
    """Parse a whole number ("120" or "120.0")."""
    value = parse_number(text)
    if not value.is_integer():
        raise ValueError(f"「{text}」应为整数")
    return int(value)


_DATE_SHAPES = (
    re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]00:00(?::00)?)?$"),
    re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$"),
    re.compile(r"^(\d{4})(\d{2})(\d{2})$"),
)


def parse_date(text: str) -> dt.date:
    """Parse a date written YYYY-MM-DD, YYYY/M/D, YYYY.M.D, YYYY年M月D日 or YYYYMMDD."""
    raw = _nfkc(text)
    for shape in _DATE_SHAPES:
        m = shape.match(raw)
        if m:
            try:
                return dt.date(int(m[1]), int(m[2]), int(m[3]))
            except ValueError:
                raise ValueError(f"「{text}」不是存在的日期") from None
    raise ValueError(f"「{text}」不是有效日期，应为 YYYY-MM-DD")


def format_date(value: dt.date | str | None) -> str:
    """Format a date as YYYY-MM-DD."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat()


_TRUE = {"是", "y", "yes", "true", "1", "√", "置顶"}
_FALSE = {"否", "n", "no", "false", "0", "×"}


def parse_bool(text: str) -> bool:
    """Parse 是/否 (also yes/no, true/false, 1/0)."""
    raw = _nfkc(text).lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"「{text}」应为“是”或“否”")


def format_bool(value: bool | None) -> str:
    """Format a flag as 是/否."""
    return "是" if value else "否"


_LIST_SEPARATORS = re.compile(r"[;；,，、\n]")


def parse_list(text: str) -> list[str]:
    """Split a cell listing several values by ；; ，, 、 or line breaks; empty items are dropped."""
    return [item.strip() for item in _LIST_SEPARATORS.split(text) if item.strip()]


def format_list(values: Iterable[str] | None) -> str:
    """Join values with a full-width semicolon."""
    return "；".join(values or [])


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse a JSON object."""
    try:
        value = jsonsafe.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"JSON 格式错误（第 {exc.lineno} 行第 {exc.colno} 列：{exc.msg}）") from None
    if reason := jsonsafe.too_deep(value):
        raise ValueError(reason)
    if not isinstance(value, dict):
        raise ValueError("应为 JSON 对象（以 { 开头）")
    return value


def format_json(value: Mapping[str, Any] | None) -> str:
    """Format a JSON object compactly with sorted keys, Chinese kept readable."""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def choice_parser(choices: Mapping[str, str], what: str) -> Callable[[str], str]:
    """Return a parser mapping any of the accepted spellings (case-insensitive) to a stored value."""
    table = {_nfkc(k).lower(): v for k, v in choices.items()}
    shown = "、".join(dict.fromkeys(k for k, v in choices.items() if not k.isascii()))

    def parse(text: str) -> str:
        value = table.get(_nfkc(text).lower())
        if value is None:
            raise ValueError(f"{what}「{text}」无效，应为{shown}之一")
        return value

    return parse


# ---------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Column:
    """One column of an import/export layout: its Chinese header, the field it fills, its cell format."""

    header: str
    key: str
    parse: Callable[[str], Any]  # raises ValueError with a Chinese reason
    format: Callable[[Any], str]
    note: str = ""  # value format, for docs/import-format.md and the CLI's help
    empty: Any = None  # what an empty cell means


def text_column(header: str, key: str, note: str = "文本") -> Column:
    """Return a plain text column."""
    return Column(header, key, parse=lambda s: s, format=lambda v: v or "", note=note)


def header_key(header: str) -> str:
    """Return the form of a header used to match it: NFKC (full-width brackets fold), no spaces, lower case."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", header)).lower()


def match_headers(columns: Sequence[Column], headers: Sequence[str]) -> tuple[dict[str, Column], list[str]]:
    """Map file headers to layout columns (by Chinese header or field name); return the map and unknown headers."""
    lookup: dict[str, Column] = {}
    for col in columns:
        lookup[header_key(col.header)] = col
        lookup.setdefault(header_key(col.key), col)
    matched: dict[str, Column] = {}
    unknown: list[str] = []
    for header in headers:
        found = lookup.get(header_key(header))
        if found is None:
            unknown.append(header)
        else:
            matched[header] = found
    return matched, unknown


def export_table(
    columns: Sequence[Column], records: Iterable[Mapping[str, Any]], fmt: ExportFormat, sheet_title: str
) -> bytes:
    """Format records with a layout and write them as CSV or XLSX."""
    headers = [c.header for c in columns]
    rows = [[c.format(rec.get(c.key)) for c in columns] for rec in records]
    if fmt == "csv":
        return write_csv(headers, rows)
    if fmt == "xlsx":
        return write_xlsx(headers, rows, sheet_title)
    raise ValidationFailed(
        "导出格式应为 csv 或 xlsx",
        code="file.unsupported_format",
        errors=[FieldError("format", "导出格式应为 csv 或 xlsx", "file.unsupported_format")],
    )


# ---------------------------------------------------------------- the report


class ImportProblem(BaseModel):
    """One problem found in an import file."""

    row: int = Field(description="表格中的行号（表头为第 1 行）")
    column: str | None = Field(None, description="列名（表头）；整行的问题为空")
    value: str | None = Field(None, description="单元格原值")
    reason: str = Field(description="原因")
    code: str = Field(description="稳定的英文错误代码")


class ImportReport(BaseModel):
    """What an import did, or would have done, row by row."""

    total: int = Field(0, description="数据行数（不含表头和空行）")
    created: int = Field(0, description="新增条数（未写入时为将会新增的条数）")
    updated: int = Field(0, description="更新条数（未写入时为将会更新的条数）")
    unchanged: int = Field(0, description="与现有数据完全相同、未作改动的条数")
    failed: int = Field(0, description="有误的行数")
    written: bool = Field(False, description="是否有数据写入")
    errors: list[ImportProblem] = Field(default_factory=list, description="每个问题一条")

    @property
    def header_failed(self) -> bool:
        """Tell whether the header itself was refused (row 1 problems), so no row was processed."""
        return any(e.row == 1 for e in self.errors)

    @property
    def rejected(self) -> bool:
        """Tell whether the import was refused: problems were found and nothing was written."""
        return bool(self.errors) and not self.written

    def summary(self) -> str:
        """Return a one-line Chinese summary for people."""
        if self.header_failed:
            return "导入失败：表头有误，未写入任何数据"
        if self.rejected:
            return f"导入失败：{self.failed} 行有误，未写入任何数据"
        text = f"共 {self.total} 行：新增 {self.created}，更新 {self.updated}，未变 {self.unchanged}"
        if self.failed:
            text += f"，{self.failed} 行有误未导入"
        return text


class ImportFailed(HuiqiError):
    """An import refused because of bad rows; its body carries the full report."""

    status_code = 422
    code = "import_failed"
    message = "导入失败"

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        super().__init__(report.summary())

    def body(self) -> dict[str, Any]:
        """Return the standard error body plus the report."""
        return {**super().body(), "report": self.report.model_dump(mode="json")}


# ---------------------------------------------------------------- running an import

RowOutcome = Literal["created", "updated", "unchanged"]
RowKey = tuple[str, Hashable]  # (field the key comes from, key value)


def run_import(
    *,
    db: Session,
    data: bytes,
    filename: str,
    columns: Sequence[Column],
    required: Sequence[str],
    key_of: Callable[[dict[str, Any]], RowKey],
    apply_row: Callable[[dict[str, Any]], RowOutcome],
    partial: bool = False,
) -> ImportReport:
    """Parse, check and apply every row, each in its own savepoint; undo everything if a row failed.

    `key_of` returns the row's identity (raising ValidationFailed when it has none), so a
    key repeated in the file is refused on the later row. `apply_row` writes one row through
    the services and says what it did; "unchanged" rows are rolled back so nothing moves.
    The whole import runs inside one savepoint: without `partial`, a single failed row rolls
    all of it back and the report tells what would have happened. The caller's transaction
    stays usable either way; committing is the caller's business.
    """
    table = read_table(data, filename)
    report = ImportReport(total=len(table.rows))
    matched, unknown = match_headers(columns, table.headers)
    present = {col.key for col in matched.values()}
    header_of = {col.key: col.header for col in columns} | {col.key: h for h, col in matched.items()}
    for header in unknown:
        report.errors.append(
            ImportProblem(row=1, column=header, value=header, reason="无法识别的列名", code="unknown_column")
        )
    seen_keys: dict[str, str] = {}
    for header, col in matched.items():
        if col.key in seen_keys:
            report.errors.append(
                ImportProblem(
                    row=1,
                    column=header,
                    value=header,
                    reason=f"与列「{seen_keys[col.key]}」重复",
                    code="duplicate_column",
                )
            )
        seen_keys[col.key] = header
    for key in required:
        if key not in present:
            report.errors.append(
                ImportProblem(row=1, column=header_of[key], value=None, reason="缺少必需的列", code="missing_column")
            )
    if report.errors:
        return report

    first_row_of: dict[Hashable, int] = {}
    outer = db.begin_nested()
    try:
        for row in table.rows:
            problems = _import_row(db, row, matched, header_of, key_of, apply_row, first_row_of, report)
            if problems:
                report.failed += 1
                report.errors.extend(problems)
        keep = not report.failed or partial
        if keep and (report.created or report.updated):
            outer.commit()
            report.written = True
        else:
            outer.rollback()
    except BaseException:
        if outer.is_active:
            outer.rollback()
        raise
    return report


def _import_row(
    db: Session,
    row: TableRow,
    by_header: dict[str, Column],
    header_of: dict[str, str],
    key_of: Callable[[dict[str, Any]], RowKey],
    apply_row: Callable[[dict[str, Any]], RowOutcome],
    first_row_of: dict[Hashable, int],
    report: ImportReport,
) -> list[ImportProblem]:
    """Import one row; return its problems (empty when it went in)."""

    def problems(errors: list[FieldError], default_code: str = "invalid") -> list[ImportProblem]:
        out = []
        for err in errors:
            column = _column_of(err.field, header_of)
            out.append(
                ImportProblem(
                    row=row.number,
                    column=column,
                    value=row.cells.get(column) if column else None,
                    reason=err.reason,
                    code=err.code or default_code,
                )
            )
        return out

    values: dict[str, Any] = {}
    parse_errors = []
    for header, col in by_header.items():
        text = row.cells.get(header, "")
        if not text:
            values[col.key] = col.empty() if callable(col.empty) else col.empty
            continue
        try:
            values[col.key] = col.parse(text)
        except ValueError as exc:
            parse_errors.append(FieldError(col.key, str(exc), "invalid_value"))
    if parse_errors:
        return problems(parse_errors)

    try:
        field, key = key_of(values)
    except HuiqiError as exc:
        return problems(_field_errors(exc))
    if key in first_row_of:
        return problems([FieldError(field, f"与第 {first_row_of[key]} 行重复", "duplicate_row")])
    first_row_of[key] = row.number

    savepoint = db.begin_nested()
    try:
        outcome = apply_row(dict(values))
    except (HuiqiError, PydanticValidationError, IntegrityError) as exc:
        savepoint.rollback()
        return problems(_field_errors(exc))
    except BaseException:
        savepoint.rollback()
        raise
    if outcome == "unchanged":
        savepoint.rollback()
        report.unchanged += 1
    else:
        savepoint.commit()
        if outcome == "created":
            report.created += 1
        else:
            report.updated += 1
    return []


def _field_errors(exc: Exception) -> list[FieldError]:
    """Turn what a row's services raised into field errors with Chinese reasons."""
    if isinstance(exc, PydanticValidationError):
        return pydantic_field_errors(exc.errors())
    if isinstance(exc, IntegrityError):
        return [FieldError("", "与现有数据冲突（违反数据库唯一或关联约束）", "integrity_error")]
    assert isinstance(exc, HuiqiError)
    if exc.errors and not isinstance(exc, Conflict):
        return list(exc.errors)
    if exc.errors:
        # A conflict's message names the other record ("文号 X 已被政策 #5 使用"): more useful than "已存在".
        return [FieldError(e.field, exc.message, exc.code) for e in exc.errors]
    return [FieldError("", exc.message, exc.code)]


_FIELD_HEAD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*")


def _column_of(field: str, header_of: dict[str, str]) -> str | None:
    """Return the header of the column an error's field path (tags[1], rules.all[0].value) refers to."""
    m = _FIELD_HEAD.match(field or "")
    return header_of.get(m.group(0)) if m else None
