"""Reading and writing spreadsheets: encodings, row numbers, canonical cells, the import report."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from openpyxl import Workbook, load_workbook

from core import tabular
from core.errors import ValidationFailed
from core.tabular import ImportFailed, ImportProblem, ImportReport

ROWS = [["中山市科技局", "442000", "高新技术企业；专精特新"], ["廣東省工業和信息化廳", "440000", ""]]
HEADERS = ["部门名称", "地区", "标签"]


def _csv(text: str, encoding: str) -> bytes:
    return text.encode(encoding)


CSV_TEXT = "部门名称,地区,标签\r\n中山市科技局,442000,高新技术企业；专精特新\r\n廣東省工業和信息化廳,440000,\r\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_csv_is_read_in_each_encoding_excel_writes(encoding: str) -> None:
    table = tabular.read_table(_csv(CSV_TEXT, encoding), "部门.csv")
    assert table.headers == HEADERS
    assert [list(r.cells.values()) for r in table.rows] == ROWS
    assert [r.number for r in table.rows] == [2, 3]


def test_bom_wins_over_guessing() -> None:
    data = b"\xef\xbb\xbf" + "名称\r\n甲\r\n".encode()
    assert tabular.read_table(data, "a.csv").headers == ["名称"]


def test_undecodable_csv_is_refused_with_a_reason() -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table(b"\xff\xfe\xff\xff,\x81\r\n", "a.csv")
    assert exc.value.code == "file.bad_encoding"


def test_blank_rows_are_skipped_but_row_numbers_follow_the_sheet() -> None:
    text = "名称,值\n甲,1\n,\n\n  ,  \n乙,2\n"
    table = tabular.read_table(text.encode(), "a.csv")
    assert [(r.number, r.cells["名称"]) for r in table.rows] == [(2, "甲"), (6, "乙")]


def test_cells_are_stripped_and_short_rows_padded() -> None:
    table = tabular.read_table("名称,值,备注\n  甲  ,1\n".encode(), "a.csv")
    assert table.rows[0].cells == {"名称": "甲", "值": "1", "备注": ""}


def test_multi_line_cell_is_one_row() -> None:
    table = tabular.read_table('名称,说明\n甲,"第一行\n第二行"\n乙,x\n'.encode(), "a.csv")
    assert [(r.number, r.cells["说明"]) for r in table.rows] == [(2, "第一行\n第二行"), (3, "x")]


@pytest.mark.parametrize("filename", ["policies.xls", "policies.txt", "policies", ""])
def test_unknown_file_extension_is_refused(filename: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table(b"a,b\n1,2\n", filename)
    assert exc.value.code == "file.unsupported_file"


def test_extension_is_case_insensitive() -> None:
    assert tabular.read_table(b"a\n1\n", "A.CSV").rows[0].cells == {"a": "1"}


def test_empty_file_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table(b"\n\n", "a.csv")
    assert exc.value.code == "file.empty_file"


def test_duplicate_and_empty_headers_are_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table("名称,,名称\n1,2,3\n".encode(), "a.csv")
    codes = {e.code for e in exc.value.errors}
    assert codes == {"empty_header", "duplicate_header"}


def test_cells_beyond_the_header_are_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table("名称\n甲,多余\n".encode(), "a.csv")
    assert exc.value.errors[0].field == "第 2 行"


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_xlsx_cells_become_canonical_text() -> None:
    data = _xlsx(
        [
            ["日期", "时间日期", "整数", "小数", "代码", "布尔"],
            [dt.date(2027, 12, 31), dt.datetime(2026, 1, 5, 0, 0), 30.0, 12.5, 442000, True],
        ]
    )
    row = tabular.read_table(data, "a.xlsx").rows[0]
    assert row.cells == {
        "日期": "2027-12-31",
        "时间日期": "2026-01-05",
        "整数": "30",
        "小数": "12.5",
        "代码": "442000",
        "布尔": "是",
    }


def test_xlsx_reads_first_sheet_and_keeps_sheet_row_numbers() -> None:
    book = Workbook()
    first = book.active
    first.append(["名称"])
    first.append(["甲"])
    first.append([None])
    first.append(["乙"])
    book.create_sheet("其他").append(["不读"])
    out = io.BytesIO()
    book.save(out)
    table = tabular.read_table(out.getvalue(), "a.xlsx")
    assert [(r.number, r.cells["名称"]) for r in table.rows] == [(2, "甲"), (4, "乙")]


def test_corrupt_xlsx_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        tabular.read_table(b"not a zip file", "a.xlsx")
    assert exc.value.code == "file.bad_file"


def test_written_csv_has_bom_crlf_and_reads_back() -> None:
    data = tabular.write_csv(HEADERS, ROWS)
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data
    table = tabular.read_table(data, "a.csv")
    assert table.headers == HEADERS
    assert [list(r.cells.values()) for r in table.rows] == ROWS


def test_written_xlsx_has_bold_header_and_widths_and_reads_back() -> None:
    data = tabular.write_xlsx(HEADERS, ROWS, sheet_title="部门")
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet.title == "部门"
    assert sheet["A1"].font.b
    assert sheet.column_dimensions["A"].width >= 20  # ten Chinese characters are twenty columns wide
    table = tabular.read_table(data, "a.xlsx")
    assert [list(r.cells.values()) for r in table.rows] == ROWS


@pytest.mark.parametrize("value", ['=HYPERLINK("http://x")', "+1", "-5%", "@SUM(A1)", "'=x", "''", "'plain"])
def test_formula_like_text_is_defused_in_csv_and_round_trips(value: str) -> None:
    data = tabular.write_csv(["值"], [[value]])
    first_cell = data.decode("utf-8-sig").split("\r\n")[1].strip('"')
    assert not first_cell.startswith(("=", "+", "-", "@"))
    assert tabular.read_table(data, "a.csv").rows[0].cells["值"] == value


def test_formula_like_text_stays_text_in_xlsx() -> None:
    data = tabular.write_xlsx(["值"], [["=1+1"], ["0769"]], sheet_title="x")
    sheet = load_workbook(io.BytesIO(data)).active
    assert sheet["A2"].data_type == "s"
    assert [r.cells["值"] for r in tabular.read_table(data, "a.xlsx").rows] == ["=1+1", "0769"]


@pytest.mark.parametrize(
    "text", ["2027-12-31", "2027/12/31", "2027.12.31", "2027年12月31日", "20271231", "２０２７-１２-３１"]
)
def test_dates_are_accepted_in_common_spellings(text: str) -> None:
    assert tabular.parse_date(text) == dt.date(2027, 12, 31)


@pytest.mark.parametrize("text", ["2027-02-30", "31/12/2027", "明年"])
def test_bad_dates_are_refused_in_chinese(text: str) -> None:
    with pytest.raises(ValueError, match="日期"):
        tabular.parse_date(text)


def test_lists_split_on_chinese_and_ascii_separators() -> None:
    assert tabular.parse_list("442000；440300;440100,441900，442000、 ") == [
        "442000",
        "440300",
        "440100",
        "441900",
        "442000",
    ]


@pytest.mark.parametrize(("text", "value"), [("是", True), ("否", False), ("Y", True), ("false", False), ("1", True)])
def test_flags_accept_yes_no(text: str, value: bool) -> None:
    assert tabular.parse_bool(text) is value


def test_numbers_accept_separators_and_full_width_digits() -> None:
    assert tabular.parse_number("1,234.5") == 1234.5
    assert tabular.parse_number("３０") == 30
    with pytest.raises(ValueError, match="数字"):
        tabular.parse_number("三十")
    with pytest.raises(ValueError, match="整数"):
        tabular.parse_int("12.5")


@pytest.mark.parametrize(
    ("value", "text"), [(30.0, "30"), (12.5, "12.5"), (0.1, "0.1"), (1e-7, "0.0000001"), (None, "")]
)
def test_numbers_format_without_trailing_zeros(value: float | None, text: str) -> None:
    assert tabular.format_number(value) == text


def test_json_cell_must_be_an_object() -> None:
    assert tabular.parse_json_object('{"all": []}') == {"all": []}
    with pytest.raises(ValueError, match="JSON 对象"):
        tabular.parse_json_object("[1]")
    with pytest.raises(ValueError, match="JSON 格式错误"):
        tabular.parse_json_object("{all: 1}")


def test_headers_match_ignoring_width_and_spaces() -> None:
    col = tabular.text_column("最高金额（万元）", "max_amount")
    matched, unknown = tabular.match_headers([col], ["最高金额 (万元)", "max_amount", "别的"])
    assert set(matched) == {"最高金额 (万元)", "max_amount"}
    assert unknown == ["别的"]


def test_refused_import_body_carries_the_report() -> None:
    report = ImportReport(
        total=3,
        created=2,
        failed=1,
        errors=[ImportProblem(row=3, column="申报截止日期", value="明天", reason="不是有效日期", code="invalid_value")],
    )
    assert report.rejected
    body = ImportFailed(report).body()
    assert body["code"] == "import_failed"
    assert body["message"] == "导入失败：1 行有误，未写入任何数据"
    assert body["report"]["errors"][0]["column"] == "申报截止日期"


def test_partial_import_with_written_rows_is_not_rejected() -> None:
    report = ImportReport(
        total=2, created=1, failed=1, written=True, errors=[ImportProblem(row=2, reason="x", code="y")]
    )
    assert not report.rejected
    assert "1 行有误未导入" in report.summary()


def test_the_one_writer_defuses_formulas_and_drops_control_characters_in_csv_and_xlsx() -> None:
    import zipfile

    from openpyxl import load_workbook

    from core import tabular

    cells = ["=1+1", "+86 760", "-2", "@SUM(A1)", "\tx", "\rx", "普通文本", "坏\x00字\x07符\x1f"]
    headers = [f"列{i}" for i in range(len(cells))]
    csv_text = tabular.write_csv(headers, [cells]).decode("utf-8-sig")
    row = csv_text.splitlines()[1]
    assert row.startswith("'=1+1,'+86 760,'-2,'@SUM(A1),")
    assert "普通文本,坏字符" in row and "\x00" not in csv_text
    data = tabular.write_xlsx(headers, [cells], "表")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "<f>" not in archive.read("xl/worksheets/sheet1.xml").decode()
    sheet = load_workbook(io.BytesIO(data)).active
    written = [c for c in sheet[2]]
    values = [c.value for c in written]
    assert values[:4] == cells[:4] and values[6:] == ["普通文本", "坏字符"]
    assert all(c.data_type == "s" for c in written)
    # (cell_text trims the tab and CR of cells 5 and 6, so nothing is left to defuse there)
    assert [bool(c.quotePrefix) for c in written] == [True] * 4 + [False] * 4
    # And it reads back as it was written.
    table = tabular.read_table(data, "x.xlsx")
    assert list(table.rows[0].cells.values())[0] == "=1+1"


def _bomb(ref: str = "A1:XFD2000", far_cell: str | None = None, rows: int = 1) -> bytes:
    """A small real XLSX of `rows` short rows whose sheet declares a huge <dimension ref> (and maybe one far cell)."""
    import re
    import zipfile

    book = Workbook()
    sheet = book.active
    sheet.append(["企业名称", "所在地区代码"])
    for i in range(rows):
        sheet.append([f"中山市示例{i}科技有限公司", "442000"])
    if far_cell:
        sheet[far_cell] = "x"
    raw = io.BytesIO()
    book.save(raw)
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = re.sub(rb'<dimension ref="[^"]*"', f'<dimension ref="{ref}"'.encode(), body)
            dst.writestr(item, body)
    return out.getvalue()


def test_an_xlsx_declaring_a_huge_dimension_is_read_by_its_real_cells_quickly() -> None:
    import time

    data = _bomb("A1:XFD2000", rows=1999)  # the outside probe's file: 9.5 s of CPU and 260 MB before
    assert len(data) < 40_000
    started = time.process_time()
    table = tabular.read_table(data, "bomb.xlsx")
    assert time.process_time() - started < 1.0
    assert table.headers == ["企业名称", "所在地区代码"]
    assert len(table.rows) == 1999
    assert table.rows[-1].cells == {"企业名称": "中山市示例1998科技有限公司", "所在地区代码": "442000"}


def test_an_xlsx_or_csv_beyond_the_row_or_column_limit_is_refused_early() -> None:
    limits = tabular.Limits(rows=3, columns=10)
    with pytest.raises(ValidationFailed) as wide:
        tabular.read_table(_bomb(far_cell="XFD2"), "wide.xlsx", limits=limits)
    assert wide.value.code == "too_many_columns" and wide.value.errors[0].field == "file"
    assert "10 列" in wide.value.message
    rows = "名称\n" + "".join(f"企业{i}\n" for i in range(4))
    with pytest.raises(ValidationFailed) as tall:
        tabular.read_table(rows.encode(), "tall.csv", limits=limits)
    assert tall.value.code == "too_many_rows"
    assert len(tabular.read_table(rows.encode(), "ok.csv", limits=tabular.Limits(rows=4, columns=10)).rows) == 4
    with pytest.raises(ValidationFailed) as wide_csv:
        tabular.read_table(("," * 20 + "x\n").encode(), "wide.csv", limits=limits)
    assert wide_csv.value.code == "too_many_columns"
