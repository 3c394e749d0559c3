"""Policy intake: text extraction per format, refused files, fields, conditions, drafts, the eval floor."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from catalog import rules as rules_mod
from catalog.intake import evaluation
from catalog.intake.conditions import propose_conditions, rules_of
from catalog.intake.extract import Limits, extract, extract_batch, reflow_pages
from catalog.intake.fields import extract_fields
from catalog.intake.service import intake_files, jaccard, shingles
from catalog.models import Policy, PolicyStatus, Tag
from core.errors import HuiqiError, PayloadTooLarge, ValidationFailed
from tests import factories
from tests.support import intake_docs as docs

# ---------------------------------------------------------------- extraction, one test per format


def _assert_notice(doc_text: str) -> None:
    assert "关于组织申报2026年专精特新中小企业奖励资金的通知" in doc_text
    assert "上年度营业收入2000万元以上" in doc_text.replace(" ", "")


def test_pdf_text_layer_is_read_with_its_structure() -> None:
    doc = extract(docs.pdf_bytes(), "notice.pdf")
    assert doc.kind == "pdf" and doc.pages == 1
    _assert_notice(doc.text)
    headings = [s.heading for s in doc.sections]
    assert "一、申报条件" in [h.rstrip(":") for h in headings]
    assert any(h.startswith("(三)从业人员") for h in headings)


def test_docx_paragraphs_and_tables_are_read() -> None:
    doc = extract(docs.docx_bytes(), "notice.docx")
    assert doc.kind == "docx"
    _assert_notice(doc.text)
    assert "附表 申报汇总" in doc.text


@pytest.mark.parametrize("encoding", ["utf-8", "gb18030"])
def test_html_text_without_scripts_in_either_encoding(encoding: str) -> None:
    doc = extract(docs.html_bytes(encoding=encoding), "notice.html")
    assert doc.kind == "html"
    _assert_notice(doc.text)
    assert "不应出现" not in doc.text and "margin" not in doc.text


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_plain_text_in_utf8_or_gb18030(encoding: str) -> None:
    doc = extract(docs.NOTICE.encode(encoding), "notice.txt")
    assert doc.kind == "text"
    _assert_notice(doc.text)


def test_type_is_sniffed_from_content_not_the_name() -> None:
    assert extract(docs.pdf_bytes(), "notice.txt").kind == "pdf"
    assert extract(docs.docx_bytes(), "notice.pdf").kind == "docx"


def test_zip_batch_yields_each_document() -> None:
    batch = docs.zip_bytes(
        {"a.pdf": docs.pdf_bytes(), "b.docx": docs.docx_bytes(), "c.txt": docs.NOTICE.encode(), "__MACOSX/._a": b"x"}
    )
    found = extract_batch(batch, "batch.zip")
    assert [(d.filename, d.kind) for d in found] == [("a.pdf", "pdf"), ("b.docx", "docx"), ("c.txt", "text")]


# ---------------------------------------------------------------- refused files


def _refused(data: bytes, name: str, limits: Limits | None = None) -> HuiqiError:
    with pytest.raises(HuiqiError) as info:
        extract_batch(data, name, limits)
    err = info.value
    assert err.message and any("\u4e00" <= ch <= "\u9fff" for ch in err.message)  # a Chinese message
    return err


def test_scanned_pdf_without_text_layer_is_refused() -> None:
    err = _refused(docs.scanned_pdf_bytes(), "scan.pdf")
    assert err.code == "file.no_text_layer" and "扫描件" in err.message


def test_encrypted_pdf_is_refused() -> None:
    err = _refused(docs.encrypted_pdf_bytes(), "locked.pdf")
    assert err.code == "file.encrypted_pdf" and "加密" in err.message


def test_oversized_file_is_refused() -> None:
    err = _refused(docs.pdf_bytes(), "big.pdf", Limits(max_bytes=1024))
    assert isinstance(err, PayloadTooLarge) and err.code == "file.too_large"


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "notice.pdf"),  # a picture named .pdf
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "notice.doc"),  # old Word
        (bytes(range(256)) * 4, "notice.txt"),  # binary junk
    ],
)
def test_wrong_type_is_refused_by_content(data: bytes, name: str) -> None:
    err = _refused(data, name)
    assert err.code == "file.unsupported_file"


def test_zip_bomb_over_the_inflated_cap_is_refused() -> None:
    bomb = docs.zip_bytes({"a.txt": b"0" * (3 * 1024 * 1024)})
    assert len(bomb) < 20_000
    err = _refused(bomb, "bomb.zip", Limits(max_unzipped_bytes=1024 * 1024))
    assert err.code == "file.zip_bomb"


def test_docx_bomb_is_refused_before_python_docx_opens_it() -> None:
    data = docs.docx_bytes()
    bomb = docs.zip_bytes({"word/document.xml": b"<w/>" * (600 * 1024), "[Content_Types].xml": b"<x/>"})
    err = _refused(bomb, "bomb.docx", Limits(max_unzipped_bytes=1024 * 1024))
    assert err.code == "file.zip_bomb"
    assert extract(data, "ok.docx", Limits(max_unzipped_bytes=1024 * 1024)).kind == "docx"


def test_zip_with_too_many_members_is_refused() -> None:
    many = docs.zip_bytes({f"{i}.txt": docs.NOTICE.encode() for i in range(12)})
    err = _refused(many, "many.zip", Limits(max_members=10))
    assert err.code == "file.zip_bomb" and "12" in err.message


def test_a_bad_file_in_a_batch_refuses_the_whole_batch() -> None:
    batch = docs.zip_bytes({"a.txt": docs.NOTICE.encode(), "b.pdf": docs.scanned_pdf_bytes()})
    err = _refused(batch, "batch.zip")
    assert err.code == "file.no_text_layer"


def test_corrupt_pdf_and_empty_file_are_refused() -> None:
    assert _refused(b"%PDF-1.7\n" + b"garbage" * 100, "x.pdf").code == "file.bad_file"
    assert _refused(b"   \n ", "x.txt").code == "file.empty_file"


# ---------------------------------------------------------------- fields and conditions


def test_fields_come_with_their_source_sentence() -> None:
    found = extract_fields(docs.NOTICE)
    values = {k: v.value for k, v in found.items()}
    assert values["title"] == "中山市工业和信息化局关于组织申报2026年专精特新中小企业奖励资金的通知"
    assert values["doc_number"] == "中工信〔2026〕18号"
    assert values["issuer"] == "中山市工业和信息化局"
    assert str(values["published_on"]) == "2026-02-20"
    assert str(values["apply_start_on"]) == "2026-03-01" and str(values["apply_end_on"]) == "2026-03-31"
    assert values["max_amount"] == 50
    assert values["apply_url"] == "https://fczj.zs.gov.cn/"
    assert values["contact_phone"] == "0760-88881234" and values["contact_name"] == "李明"
    assert values["contact_address"].startswith("中山市东区松苑路1号")
    assert (values["level"], values["region_code"]) == ("municipal", "442000")
    assert "最高不超过50万元" in found["max_amount"].source
    assert all(0 < p.confidence <= 1 for p in found.values())


def test_a_labelled_line_is_no_title() -> None:
    text = "某市工业企业入规奖励\n适用对象：首次纳入规模以上工业统计的企业。\n政策依据：《某市人民政府关于印发若干措施的通知》\n"
    assert extract_fields(text)["title"].value == "某市工业企业入规奖励"


def test_issuer_from_a_metadata_line_or_joint_bodies_and_a_cover_notices_date() -> None:
    text = "关于申报2025年度某区科技发展资金项目的通知\n发布机构：无锡市惠山区科技局\n各镇（街道）：\n现将有关事项通知如下。\n"
    assert extract_fields(text)["issuer"].value == "无锡市惠山区科技局"
    text = (
        "烟台市商务局 烟台市财政局关于印发《烟台市鼓励高质量招商引资奖励细则》的通知\n各（区）市招商主管部门：\n"
        "现将《细则》印发给你们，请遵照执行。\n烟台市商务局 烟台市财政局\n2021年7月21日\n烟台市鼓励高质量招商引资奖励细则\n"
        "一、受奖企业应为在烟台市内注册的企业。\n"
    )
    found = extract_fields(text)
    assert found["issuer"].value == "烟台市商务局、烟台市财政局"
    assert found["published_on"].value.isoformat() == "2021-07-21"


def test_a_cited_document_or_a_list_item_is_no_title_and_市外_is_no_place() -> None:
    text = (
        "浦东新区促进小微企业创新创业财政扶持项目\n一、政策依据\n《某某扶持办法》（浦科经委规[2022]1号）\n2）申报条件\n"
    )
    assert extract_fields(text)["title"].value == "浦东新区促进小微企业创新创业财政扶持项目"
    text = (
        "关于对从市外引入投资科技企业实施的项目予以资金支持的通知\n一、申报条件\n1.在哈尔滨市行政区域内注册的企业。\n"
    )
    assert extract_fields(text)["region_code"].value == "230100"


def test_a_phone_number_on_the_line_after_its_heading() -> None:
    text = (
        "小微企业创业贷款\n六、受理机构\n单位注册地所属区县的人社部门受理。\n七、联系电话\n029-86556924 029-86279317\n"
    )
    assert extract_fields(text)["contact_phone"].value == "029-86556924"


def test_validity_and_county_level() -> None:
    text = "深圳市南山区人民政府关于印发扶持办法的通知\n第十条 本办法自2024年1月1日起施行，有效期3年。\n"
    values = {k: v.value for k, v in extract_fields(text).items()}
    assert str(values["valid_from_on"]) == "2024-01-01" and str(values["valid_to_on"]) == "2026-12-31"
    assert (values["level"], values["region_code"]) == ("county", "440305")


@pytest.mark.parametrize(
    ("text", "level", "region"),
    [
        ("株洲创业担保贷款及贴息政策\n对小微企业给予贴息。\n", "municipal", "430200"),
        (
            "新乡高新区关于进一步推进企业上市挂牌的奖励办法\n第一条 奖励对象为上市企业。\n",
            "municipal",
            "410700",
        ),  # a city's zone: the city's level (d37)
        # A labelled line is no title; an unnamed provincial body's region from its 文号; 省级 is no place.
        ("自治区工业和信息化厅关于组织申报补助资金的通知\n桂工信综合〔2024〕80号\n", "provincial", "450000"),
        (
            "关于开展省级“专精特新”中小企业认定工作的通知\n河北省工业和信息化厅\n各市（含定州、辛集市）工业和信息化局：\n",
            "provincial",
            "130000",
        ),
        ("银川市中小企业数字化转型试点项目预征集通知\n一、征集范围\n", "municipal", "640100"),
        ("关于开展2019年嘉定区智慧城市专项资金项目申报工作的通知\n", "county", "310114"),
        # Every county is in the table; a city + county short name names it (成都龙泉驿).
        ("余姚市研发投入奖励申报条件\n", "county", "330281"),
        ("成都龙泉驿：关于开展2022年“小升规”奖励申报工作的通知\n", "county", "510112"),
        # A county name several counties share names none of them without its city ...
        ("鼓楼区科学技术局关于组织申报研发补助的通知\n", "county", None),
        # ... and names the one whose city the text names.
        ("鼓楼区科学技术局关于组织申报研发补助的通知\n福州市鼓楼区科学技术局\n", "county", "350102"),
        # A forwarded document's place is its issuer's, not this notice's.
        (
            "关于转发《福建省科学技术厅关于开展项目申报工作的通知》的通知\n请福州市各有关单位按要求申报。\n",
            "municipal",
            "350100",
        ),
    ],
)
def test_places_across_the_country_give_level_and_region(text: str, level: str | None, region: str) -> None:
    values = {k: v.value for k, v in extract_fields(text).items()}
    assert (values.get("level"), values.get("region_code")) == (level, region)


def test_conditions_are_proposed_in_the_rule_format() -> None:
    proposals = propose_conditions(docs.NOTICE, home_region="442000")
    coded = {(p.node["field"], p.node["op"], str(p.node["value"])) for p in proposals if p.node}
    assert coded >= {
        ("region_code", "within_region", "['442000']"),
        ("established_on", "years_since_gte", "2"),
        ("annual_revenue", "gte", "2000"),
        ("rd_ratio", "gte", "3"),
        ("employees", "lte", "300"),
        ("size_class", "in", "['medium', 'small', 'micro']"),
        ("tax_credit_level", "in", "['A', 'B']"),
        ("credit_standing", "ne", "dishonest"),
        ("qualifications", "has_any", "['专精特新中小企业', '专精特新“小巨人”企业']"),
    }
    # Nothing from the support standard, the dates or the contact part becomes a condition.
    assert not any(p.node and p.node["field"] == "annual_revenue" and p.node["value"] == 50 for p in proposals)
    for p in proposals:
        assert p.source and 0 < p.confidence < 1
        if p.node is not None:
            assert not rules_mod.validate_rules(p.node), p.node
    plain = [p for p in proposals if p.node is None]
    assert any("独立法人资格" in p.text for p in plain)


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        # A province or city named without its suffix after 在 is the registration region.
        ("申报条件\n1.在江苏境内注册，具有独立法人资格；", ("region_code", "within_region", ["320000"]), None),
        ("申报条件\n1.在杭州注册并开展经营。", ("region_code", "within_region", ["330100"]), None),
        # Operating in a place; an unrelated 境外 elsewhere in the clause excludes nothing.
        ("申报条件\n1.在深圳市内依法经营的企业。", ("region_code", "within_region", ["440300"]), None),
        (
            "申报条件\n（1）注册并纳税在本区的企业，或者引进境外高端技术成果的项目。",
            ("region_code", "within_region", ["440305"]),
            None,
        ),
        # What is only preferred is no requirement.
        (
            "申报条件\n1.职工总数不超过500人，优先支持有效期内的高新技术企业。",
            ("employees", "lte", 500),
            ("qualifications", "has_any", ["高新技术企业"]),
        ),
        ("申报条件\n1.上市企业、瞪羚企业，优先予以认定。", None, ("qualifications", "has_any", ["上市公司"])),
        # Items under 未发生下列情况 name what is excluded.
        (
            "申报条件\n企业在申报截止日一年内未发生下列情况：偷税等严重税收违法行为；被有关部门认定存在严重失信行为。",
            ("credit_standing", "ne", "dishonest"),
            None,
        ),
        # A tier owning its upper bound (含): the next tier's "以上" starts above it.
        (
            "申报条件\n1.销售收入在5000万元至2亿元（含）的企业，比例不低于4%；\n2.销售收入在2亿元以上的企业，比例不低于3%。",
            ("annual_revenue", "gt", 20000),
            ("annual_revenue", "gte", 20000),
        ),
        ("申报条件\n1.上年度技术开发费投入超过100万。", ("rd_expense", "gt", 100), None),
        # A size named among other kinds of applicant, or inside another word's definition, is no requirement.
        (
            "申报条件\n（一）在深圳市内依法经营，具有独立法人资格的民营企业、中小微企业、服务机构；",
            None,
            ("size_class", "in", ["medium", "small", "micro"]),
        ),
        (
            "申报条件\n“隐形冠军”是指长期专注于某一细分行业的中小企业。",
            None,
            ("size_class", "in", ["medium", "small", "micro"]),
        ),
        (
            "申报条件\n（二）中小微企业，是指依据中小企业划分标准认定的中型、小型、微型企业。",
            ("size_class", "in", ["medium", "small", "micro"]),
            None,
        ),
        # Exclusion lists name who is barred: only "not dishonest" is coded from them.
        (
            "申报条件\n1.在本市注册。\n2.有下列情形之一的，不予支持：\n（1）被列入严重失信主体名单的；\n"
            "（2）已获得市级高新技术企业奖励的。",
            ("credit_standing", "ne", "dishonest"),
            ("qualifications", "has_any", ["高新技术企业"]),
        ),
        (
            "申报条件\n（一）在本市注册。\n（二）以下企业不得申报：1.房地产开发企业；2.规上工业企业。",
            None,
            ("qualifications", "has_any", ["规模以上工业企业"]),
        ),
        (
            "申报条件\n1.已享受市级专精特新企业奖励的企业不得重复申报。",
            None,
            ("qualifications", "has_any", ["专精特新中小企业"]),
        ),
        # What the policy helps firms become, examples and one item of an open list are no requirement.
        (
            "申报条件\n1.鼓励企业积极申报高新技术企业、专精特新中小企业。",
            None,
            ("qualifications", "has_any", ["专精特新中小企业"]),
        ),
        (
            "申报条件\n1.申报企业可为各类市场主体，如高新技术企业、科技型中小企业等。",
            None,
            ("qualifications", "has_any", ["科技型中小企业", "高新技术企业"]),
        ),
        (
            "申报条件\n1.设立技术研究院、企业技术中心、博士后工作站等研发机构。",
            None,
            ("qualifications", "has_any", ["博士后科研工作站"]),
        ),
        (
            "申报条件\n1.近三年进入“创客中国”中小企业创新创业大赛50强。",
            None,
            ("size_class", "in", ["medium", "small", "micro"]),
        ),
        # "省级以上" names that level and the ones above it.
        (
            "申报条件\n1.已认定为省级以上企业技术中心的企业。",
            ("qualifications", "has_any", ["省级企业技术中心", "国家级企业技术中心"]),
            None,
        ),
        (
            "申报条件\n1.无拖欠职工工资、欠缴社会保险费等严重违规违反信用记录。",
            ("credit_standing", "ne", "dishonest"),
            None,
        ),
        # Sectors named as exceptions, or joined by 或 to a kind without a code, are no condition.
        ("申报条件\n1.在本市注册的企业，房地产企业、金融类企业除外。", None, ("industry_code", "prefix", ["K"])),
        ("申报条件\n1.属于工业企业或现代服务业企业。", None, ("industry_code", "prefix", ["B", "C", "D"])),
        # Definitions and requirements of some applicants only.
        (
            "申报条件\n注：本通知所称规上企业是指年主营业务收入2000万元以上的工业企业。",
            None,
            ("annual_revenue", "gte", 2000),
        ),
        (
            "申报条件\n第十八条 申请改善融资环境项目的企业还应具备以下条件：\n（一）注册资本不低于1亿元；",
            None,
            ("registered_capital", "gte", 10000),
        ),
        (
            "申报条件\n（三）申请第七条第一款的批发、零售企业，年网上零售额增长超1000万元。",
            None,
            ("industry_code", "prefix", ["F"]),
        ),
        # Session 6: what an aside excepts is barred; a size word inside a qualification's name is no size.
        (
            "申报条件\n（一）在本区注册的小型微型企业（已认定的“专精特新”中小企业除外）。",
            ("qualifications", "has_none", ["专精特新中小企业"]),
            ("size_class", "in", ["medium", "small", "micro"]),
        ),
        # Names after 申报 / 成为, with a year or place between, and in the work announced are not required.
        (
            "申报条件\n一、拟申报苏州市专精特新中小企业的，须先成为苏州市创新型中小企业。",
            None,
            ("qualifications", "has_any", ["专精特新中小企业"]),
        ),
        (
            "申报条件\n一、认真组织企业申报2024年度专精特新中小企业。",
            None,
            ("qualifications", "has_any", ["专精特新中小企业"]),
        ),
        # Leaders of industry are no agricultural 龙头企业; a 潜质 firm is not yet the qualification.
        (
            "申报条件\n（1）工业龙头企业、链主型龙头企业，在一季度产值增长10%以上。",
            None,
            ("qualifications", "has_any", ["农业产业化龙头企业"]),
        ),
        # Session 10: a bare 龙头企业 is the agricultural one only in a text that names farming.
        (
            "申报条件\n1.属于龙头企业或规模以上工业企业。",
            ("qualifications", "has_any", ["规模以上工业企业"]),
            ("qualifications", "has_any", ["农业产业化龙头企业", "规模以上工业企业"]),
        ),
        (
            "申报条件\n1.从事农产品加工的龙头企业。",
            ("qualifications", "has_any", ["农业产业化龙头企业"]),
            None,
        ),
        ("申报条件\n属于关键领域的“小巨人”潜质企业。", None, ("qualifications", "has_any", ["专精特新“小巨人”企业"])),
        # Exclusion lists: 不存在下列情况 / 不含以下类型企业 name what is barred; only 失信 is coded from them.
        (
            "申报条件\n（七）企业不存在下列情况：近三年发生过重大安全事故；被列入严重失信主体名单。",
            ("credit_standing", "ne", "dishonest"),
            None,
        ),
        (
            "支持对象\n规模以上工业企业。支持对象不含以下类型企业：（1）垄断性行业企业；（2）近两年存在严重不良信用记录的企业。",
            ("credit_standing", "ne", "dishonest"),
            None,
        ),
        # Operating in a place is where the firm is; a 工业企业 applicant is industrial, not an aggregate of them.
        ("申报条件\n（一）在本区生产、经营，实质性运营的企业。", ("region_code", "within_region", ["440305"]), None),
        ("申报条件\n1.在本区依法注册具有独立法人资格的工业企业；", ("industry_code", "prefix", ["B", "C", "D"]), None),
        (
            "申报条件\n营业收入同比增速超过全区工业企业平均水平。",
            None,
            ("industry_code", "prefix", ["B", "C", "D"]),
        ),
        # A sector naming a kind of project is not the firm's.
        ("申报条件\n（二）申报的制造业中小企业数字化改造项目在本市实施。", None, ("industry_code", "prefix", ["C"])),
        # Sectors of several tiers are one list: disjoint prefixes would together admit no firm.
        (
            "申报条件\n1、销售额10亿元以上的零售企业。\n2、销售额1亿元以上的餐饮企业。",
            ("industry_code", "prefix", ["F52", "H62"]),
            ("industry_code", "prefix", ["F52"]),
        ),
        # A benchmark (…平均水平) and 规上 firms of another sector are no 规模以上工业企业 requirement.
        (
            "申报条件\n2、上年营业收入增长率高于同期全省规上工业企业平均水平。",
            None,
            ("qualifications", "has_any", ["规模以上工业企业"]),
        ),
        (
            "申报条件\n对营业收入首次达到1亿元的规上服务业企业给予奖励。",
            None,
            ("qualifications", "has_any", ["规模以上工业企业"]),
        ),
        # A sector excepted after 不包括 leaves the sector named before it; the statistics a firm is in place it.
        (
            "申报范围\n纳入本区规上工业统计库的在库制造业企业，不包括电力、热力、燃气和水的生产和供应业。",
            ("industry_code", "prefix", ["C"]),
            None,
        ),
        (
            "申报范围\n纳入本区规上工业统计库的在库制造业企业。",
            ("region_code", "within_region", ["440305"]),
            None,
        ),
        # An item of the conditions that cites an attachment is no 附件 heading closing them.
        (
            "一、申报条件\n（一）主营业务应属于《文化及相关产业分类》（见附件13）确定的经营范围。\n（二）登记注册一年以上。",
            ("established_on", "years_since_gte", 1),
            None,
        ),
        # The qualification applied for, quoted after the place, is not required of the applicant.
        (
            "一、申报条件\n申报认定某市“专精特新”中小企业必须具备所有基本条件：\n1.企业注册二年以上。",
            ("established_on", "years_since_gte", 2),
            ("qualifications", "has_any", ["专精特新中小企业"]),
        ),
        # Barring the dishonest is "not dishonest"; a promised term of operation is no age.
        (
            "一、申报条件\n1.列入失信被执行名单的企业，以及逾期未验收的企业，不得申报本年度专项资金。",
            ("credit_standing", "ne", "dishonest"),
            None,
        ),
        (
            "一、申报条件\n受奖企业应为在本区注册、承诺在本区经营期限不低于10年的企业。",
            ("region_code", "within_region", ["440305"]),
            ("established_on", "years_since_gte", 10),
        ),
        # A heading that names the content beside the materials is read; a bare heading line opens a section.
        (
            "一、奖励内容、标准和申报材料\n受奖企业应为在本区注册的企业。",
            ("region_code", "within_region", ["440305"]),
            None,
        ),
        (
            "某区科技专项\n申报条件\n在本区依法经营的中小企业，无失信行为。\n申报材料\n企业获得专精特新“小巨人”证书复印件。",
            ("size_class", "in", ["medium", "small", "micro"]),
            ("qualifications", "has_any", ["专精特新“小巨人”企业"]),
        ),
        # With no condition heading, the support standards name whom the text supports.
        (
            "某市创业场租补贴\n补贴标准及方式：\n（一）对经认定的初创科技型中小企业，给予最长不超过3年的场租补贴。",
            ("qualifications", "has_any", ["科技型中小企业"]),
            None,
        ),
        # Hiring 失业人员 says nothing against the size named; a grace clause bars nothing.
        (
            "申请条件\n新招用城镇登记失业人员达到职工人数15%以上的小型、微型企业。",
            ("size_class", "in", ["small", "micro"]),
            None,
        ),
        (
            "申报条件\n企业具备高新技术企业资质。尚未获得高新技术企业资质的企业原则上应在获得支持一年内通过认定。",
            ("qualifications", "has_any", ["高新技术企业"]),
            ("qualifications", "has_none", ["高新技术企业"]),
        ),
        # A date before which the firm registered, with 企业 between; registration in the park.
        (
            "二、申报对象\n即2019年12月31日以前企业注册、税务关系落户园区的企业。",
            ("established_on", "lte", "2019-12-31"),
            None,
        ),
        (
            "二、申报对象\n即2019年12月31日以前企业注册、税务关系落户园区的企业。",
            ("region_code", "within_region", ["440305"]),
            None,
        ),
    ],
)
def test_condition_phrasings(text: str, present: tuple | None, absent: tuple | None) -> None:
    nodes = [p.node for p in propose_conditions(text, home_region="440305") if p.node]
    if present is not None:
        assert {"field": present[0], "op": present[1], "value": present[2]} in nodes, nodes
    if absent is not None:
        assert {"field": absent[0], "op": absent[1], "value": absent[2]} not in nodes, nodes


@pytest.mark.parametrize(
    ("sentence", "home", "region"),
    [
        ("申报条件\n1.在本市注册。", "440305", "440300"),  # a district's 本市 is its city
        ("申报条件\n1.在本市注册。", "110108", "110000"),  # ... a municipality's district's, the municipality
        ("申报条件\n1.在本市注册。", "330281", "330281"),  # a county-level city's 本市 is itself
        ("申报条件\n1.在我省境内注册。", "440300", "440000"),
        ("申报条件\n1.工商注册和税务登记在高新区。", "410700", "410700"),  # the issuer's zone, coded as its city
    ],
)
def test_local_words_resolve_against_the_issuers_region(sentence: str, home: str, region: str) -> None:
    nodes = [p.node for p in propose_conditions(sentence, home_region=home) if p.node]
    assert {"field": "region_code", "op": "within_region", "value": [region]} in nodes, nodes


def test_alternatives_become_one_any_node() -> None:
    """ "满足下列条件之一" lists and thresholds joined by 或 are alternatives, not all required."""
    text = (
        "申报条件\n（一）在本市注册的企业。\n（二）符合下列条件之一：\n"
        "1.年营业收入2000万元以上且研发费用占营业收入比例不低于3%；\n2.企业职工人数100人以上；\n"
        "（三）未被列入失信名单。\n（四）注册资本500万元以上或资产总额1亿元以上。\n"
    )
    proposals = propose_conditions(text, home_region="440300")
    rules = rules_of(proposals)
    assert rules is not None and not rules_mod.validate_rules(rules)
    assert rules["all"] == [
        {"field": "region_code", "op": "within_region", "value": ["440300"]},
        {
            "any": [
                {
                    "all": [
                        {"field": "annual_revenue", "op": "gte", "value": 2000},
                        {"field": "rd_ratio", "op": "gte", "value": 3},
                    ]
                },
                {"field": "employees", "op": "gte", "value": 100},
            ]
        },
        {"field": "credit_standing", "op": "ne", "value": "dishonest"},
        {
            "any": [
                {"field": "registered_capital", "op": "gte", "value": 500},
                {"field": "total_assets", "op": "gte", "value": 10000},
            ]
        },
    ]
    grouped = [p.as_dict()["alternative"] for p in proposals if p.group is not None]
    assert grouped[0] == {"group": 1, "branch": 1} and grouped[-1] == {"group": 2, "branch": 2}


@pytest.mark.parametrize(
    ("sentence", "expected"),
    [
        ("申报条件：年营业收入不超过1亿元", ("annual_revenue", "lte", 10000)),
        ("申报条件：注册资本500万元（含）以上", ("registered_capital", "gte", 500)),
        ("申报条件：资产总额低于5000万元", ("total_assets", "lt", 5000)),
        ("申报条件：职工人数超过50人", ("employees", "gt", 50)),
        ("申报条件：成立时间不超过5年的企业", ("established_on", "years_since_lte", 5)),
        ("申报条件：2020年1月1日以后注册成立的企业", ("established_on", "gte", "2020-01-01")),
        ("申报条件：纳税信用等级不为C级、D级", ("tax_credit_level", "not_in", ["C", "D"])),
        ("申报条件：属于软件和信息技术服务业的企业", ("industry_code", "prefix", ["I65"])),
        ("申报条件：未被认定为高新技术企业", ("qualifications", "has_none", ["高新技术企业"])),
        ("申报条件：年营业收入过亿元", ("annual_revenue", "gt", 10000)),
        ("申报条件：符合划型标准的中型、小型企业", ("size_class", "in", ["medium", "small"])),
        # Bounds written around the metric, bare 万 / 亿, and other ways of writing the same thresholds.
        ("申报条件：2000万≤上年度销售收入<10亿", ("annual_revenue", "gte", 2000)),
        ("申报条件：2000万≤上年度销售收入<10亿", ("annual_revenue", "lt", 100000)),
        ("申报条件：5千万元<近一年销售收入≤2亿元", ("annual_revenue", "gt", 5000)),
        ("申报条件：近三年平均研发投入占比≥3%", ("rd_ratio", "gte", 3)),
        ("申报条件：R&D投入占销售收入比重3%以上", ("rd_ratio", "gte", 3)),
        ("申报条件：研发投入经费在30万元以上且增幅在50%以上", ("rd_expense", "gte", 30)),
        ("申报条件：上年度营业收入超1亿元", ("annual_revenue", "gt", 10000)),
        ("申报条件：营业收入不超1亿元", ("annual_revenue", "lte", 10000)),
        ("申报条件：年营业收入不低于500万元，且吸纳就业人数不少于10人", ("annual_revenue", "gte", 500)),
        ("申报条件：员工不少于10人", ("employees", "gte", 10)),
        ("申报条件：企业须注册成立365个日历天数以上", ("established_on", "years_since_gte", 1)),
        ("申报条件：经营期限满一年", ("established_on", "years_since_gte", 1)),
        ("申报条件：注册时间在2021年1月1日以后", ("established_on", "gte", "2021-01-01")),
        # Tiers listed after one comparison word, 突破 as reaching, a metric carried to the next bare bound.
        ("申报条件：营业收入首次突破1亿元、3亿元、5亿元的企业", ("annual_revenue", "gte", 30000)),
        ("申报条件：营业收入首次突破1亿元、3亿元、5亿元的企业", ("annual_revenue", "gte", 50000)),
        (
            "申报条件：销售收入首次超过2000万元（含）的批发业企业；首次超过500万（含）零售业企业",
            ("annual_revenue", "gte", 500),
        ),
        ("申报条件：商贸、服务业企业销售（营业）收入首次超过3亿元的企业", ("annual_revenue", "gt", 30000)),
        # A range whose lower bound carries （含）.
        ("申报条件：2018年销售收入在500万元（含）-2000万元的企业", ("annual_revenue", "between", [500, 2000])),
    ],
)
def test_threshold_words_and_units(sentence: str, expected: tuple[str, str, object]) -> None:
    nodes = [p.node for p in propose_conditions(sentence) if p.node]
    assert {"field": expected[0], "op": expected[1], "value": expected[2]} in nodes


def test_shingle_similarity_spots_near_copies() -> None:
    edited = docs.NOTICE.replace("2026年3月31日", "2026年4月30日")
    assert jaccard(shingles(docs.NOTICE), shingles(edited)) > 0.9
    assert jaccard(shingles(docs.NOTICE), shingles("完全不同的另一份文件：关于开展安全生产检查的通知")) < 0.1


# ---------------------------------------------------------------- drafts


def _zhongshan(db: Session) -> str:
    dept = factories.make_department(db, name="中山市工业和信息化局", short_name="中山工信", region_code="442000")
    for name in ("专精特新中小企业", "专精特新“小巨人”企业"):
        if not db.scalar(select(func.count()).select_from(Tag).where(Tag.name == name)):
            factories.make_tag(db, name=name, kind="qualification")
    return dept.code


def test_intake_creates_a_draft_with_valid_rules_and_flags_duplicates(db: Session) -> None:
    _zhongshan(db)
    first = intake_files(db=db, files=[("notice.pdf", docs.pdf_bytes())], actor=None)
    assert len(first) == 1
    policy = first[0].policy
    assert policy is not None and policy.status == PolicyStatus.draft and policy.published_at is None
    assert policy.issuing_department.name == "中山市工业和信息化局"
    assert policy.doc_number == "中工信〔2026〕18号" and policy.max_amount == 50
    assert policy.region_codes == ["442000"]
    rules_mod.check_rules(policy.rules)
    assert policy.full_text and "申报条件" in policy.full_text
    assert first[0].duplicates == []
    again = intake_files(db=db, files=[("copy.docx", docs.docx_bytes())], actor=None)
    dup = again[0].duplicates
    assert {d["policy_id"] for d in dup} == {policy.id}
    assert again[0].policy is not None and again[0].policy.doc_number is None  # the 文号 stays with the first
    assert again[0].policy.title != policy.title


def test_nothing_is_saved_when_one_file_is_bad(db: Session) -> None:
    _zhongshan(db)
    before = db.scalar(select(func.count()).select_from(Policy))
    batch = docs.zip_bytes({"a.txt": docs.NOTICE.encode(), "b.pdf": docs.encrypted_pdf_bytes()})
    with pytest.raises(ValidationFailed):
        intake_files(db=db, files=[("batch.zip", batch)], actor=None)
    assert db.scalar(select(func.count()).select_from(Policy)) == before


def test_unknown_issuer_needs_a_department(db: Session) -> None:
    text = docs.NOTICE.replace("中山市工业和信息化局", "某某市某某局")
    with pytest.raises(ValidationFailed) as info:
        intake_files(db=db, files=[("x.txt", text.encode())], actor=None)
    assert info.value.code == "catalog.intake_department_unknown"
    code = factories.make_department(db).code
    made = intake_files(db=db, files=[("x.txt", text.encode())], actor=None, department=code)
    assert made[0].policy is not None and made[0].policy.issuing_department.code == code


def test_twenty_page_pdf_is_read_and_analysed_within_three_seconds() -> None:
    data = docs.pdf_bytes(docs.NOTICE, pages=20)
    started = time.perf_counter()
    doc = extract(data, "long.pdf")
    extract_fields(doc.text)
    propose_conditions(doc.text, sections=doc.sections)
    elapsed = time.perf_counter() - started
    assert doc.pages == 20
    assert elapsed <= 3.0, f"{elapsed:.2f} s"


# ---------------------------------------------------------------- the labelled set


def test_eval_on_the_fresh_split_beats_the_keyword_baseline() -> None:
    # The fresh texts (sessions 7, 8 and 10) were labelled before intake ran on them and are scored in aggregate only.
    result = evaluation.run("fresh")
    s, b = result.system, result.baseline
    assert result.documents >= 42 and s.labelled >= 76
    assert s.field_accuracy > b.field_accuracy and s.precision > b.precision and s.recall > b.recall
    assert s.precision >= 0.70 and s.recall >= 0.62  # 0.726 / 0.697 measured on 42 texts (tests/data/README.md)


def test_eval_on_the_held_out_split_beats_the_keyword_baseline_and_holds_its_floor() -> None:
    result = evaluation.run("test")
    s, b = result.system, result.baseline
    assert result.documents >= 93 and s.labelled >= 249
    # The whole set holds at least 300 hand-labelled conditions (issue 17).
    assert sum(len(set(doc.conditions)) for doc in evaluation.load("all")) >= 300
    # Floors a little under the figures measured on the whole held-out split (README "Policy intake"):
    # a regression fails here. Adding held-out documents may lower the figures; then say so and move the floor.
    assert s.field_accuracy >= 0.93 and s.field_accuracy_in_table >= 0.93
    assert s.precision >= 0.82 and s.recall >= 0.73
    assert s.field_accuracy > b.field_accuracy and s.precision > b.precision and s.recall > b.recall


# ---------------------------------------------------------------- PDF lines back into paragraphs

_FULL = "根据本办法规定，申报企业应当在本市依法登记注册并具有独立法人资格，且近三年无重大"  # a full line


def test_reflow_joins_a_sentence_wrapped_at_the_margin_and_keeps_paragraphs() -> None:
    page = "\n".join(
        [
            "关于组织开展2026年度市级专精特新中小企业和创新型中小企业奖励资金项目申报工作的通知",  # full, yet the title's end
            "各有关企业：",
            *[_FULL] * 4,
            "安全事故，上年度营业收入不低于",
            "一、申报条件",
            "（一）企业上年度主营业务收入不低于2000万元，且研发费用占营业收入的比重不低于百分之",
            "3。",
            "（二）企业纳税信用等级为B级以上。",
        ]
    )
    text = reflow_pages([page])
    lines = text.split("\n")
    assert lines[0].endswith("申报工作的通知") and lines[1] == "各有关企业："
    assert lines[2] == _FULL * 4 + "安全事故，上年度营业收入不低于"  # a short line ends the paragraph
    assert lines[3] == "一、申报条件"  # a heading after a short line, and never joined into
    assert lines[4].endswith("不低于百分之3。") and lines[5].startswith("（二）")


def test_reflow_joins_across_pages_and_drops_page_numbers() -> None:
    first = "\n".join([*[_FULL] * 6, "- 1 -"])
    second = "\n".join(["安全事故。", *[_FULL] * 5, "第 2 页 共 3 页"])
    lines = reflow_pages([first, second]).split("\n")
    assert lines[0] == _FULL * 6 + "安全事故。"
    assert "- 1 -" not in lines and not any("共 3 页" in line for line in lines)


def test_reflow_leaves_a_page_too_short_to_tell_a_full_line() -> None:
    page = "申报条件\n在本市注册的企业\n营业收入不低于500万元"
    assert reflow_pages([page]) == page


def test_a_labelled_text_laid_out_as_a_pdf_gives_what_the_text_gives() -> None:
    """Intake of a PDF reads what the same text typed in reads: wrapped lines are joined again (label-free:
    the tuning texts laid out at 48 characters a line, the proposals compared, not scored)."""
    texts = evaluation.load("tune")
    differ = []
    for doc in texts:
        from_text = evaluation.intake_text(doc.text)
        from_pdf = evaluation.intake_text(extract(docs.pdf_bytes(doc.text), f"{doc.doc_id}.pdf").text)
        if set(from_text[1]) != set(from_pdf[1]) or from_text[0] != from_pdf[0]:
            differ.append(doc.doc_id)
    assert len(texts) >= 120 and len(differ) <= 2, differ
