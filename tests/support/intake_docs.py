"""Policy documents built at test time for the intake tests (no binaries are committed).

PDFs are drawn with reportlab's built-in Chinese CID font (STSong-Light), so they carry a real text
layer; DOCX files are written with python-docx.
"""

from __future__ import annotations

import io
import zipfile

NOTICE = """中山市工业和信息化局关于组织申报2026年专精特新中小企业奖励资金的通知
中工信〔2026〕18号
各有关企业：
根据《中山市促进中小企业高质量发展若干措施》，现就申报有关事项通知如下：
一、申报条件
（一）在中山市依法注册登记、具有独立法人资格的企业，成立满2年以上；
（二）上年度营业收入2000万元以上，研发费用占营业收入比例不低于3%；
（三）从业人员不超过300人的中小企业；
（四）纳税信用等级B级及以上，未被列入严重失信主体名单；
（五）2025年新认定的专精特新中小企业或专精特新“小巨人”企业。
二、支持标准
对符合条件的企业给予一次性奖励，最高不超过50万元。
三、申报时间
2026年3月1日至3月31日，逾期不予受理。
四、申报方式
登录中山市产业扶持发展专项资金信息网（https://fczj.zs.gov.cn/）进行申报。
五、联系方式
联系人：李明，电话：0760-88881234。地址：中山市东区松苑路1号。
中山市工业和信息化局
2026年2月20日
"""


WIDTH = 480  # points of text per line: 48 Chinese characters at 10 pt


def pdf_bytes(text: str = NOTICE, pages: int = 1) -> bytes:
    """A PDF with a text layer: the text drawn line by line on each of `pages` pages."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if "STSong-Light" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    out = io.BytesIO()
    c = canvas.Canvas(out)
    for _ in range(pages):
        c.setFont("STSong-Light", 10)
        y = 800
        for line in text.split("\n"):
            while line:
                # Laid out as a PDF is: wrapped at the margin by width (a Chinese character is twice a digit's).
                cut = 1
                while cut < len(line) and pdfmetrics.stringWidth(line[: cut + 1], "STSong-Light", 10) <= WIDTH:
                    cut += 1
                c.drawString(40, y, line[:cut])
                line = line[cut:]
                y -= 14
                if y < 40:
                    c.showPage()
                    c.setFont("STSong-Light", 10)
                    y = 800
        c.showPage()
    c.save()
    return out.getvalue()


def scanned_pdf_bytes(pages: int = 2) -> bytes:
    """A PDF of pictures only (what a scanner produces): pages with drawings and no text."""
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    c = canvas.Canvas(out)
    for _ in range(pages):
        for i in range(30):
            c.rect(40 + i * 5, 400 + i * 7, 200, 8, fill=1)
        c.showPage()
    c.save()
    return out.getvalue()


def encrypted_pdf_bytes(password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes())).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(text: str = NOTICE) -> bytes:
    import docx

    document = docx.Document()
    for line in text.split("\n"):
        document.add_paragraph(line)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "附表"
    table.rows[0].cells[1].text = "申报汇总"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html_bytes(text: str = NOTICE, encoding: str = "utf-8") -> bytes:
    body = "".join(f"<p>{line}</p>" for line in text.split("\n"))
    charset = "gb2312" if encoding == "gb18030" else encoding
    page = (
        f'<!DOCTYPE html><html><head><meta charset="{charset}"><title>页面标题</title>'
        f"<script>var x = '不应出现';</script><style>p {{ margin: 0 }}</style></head><body>{body}</body></html>"
    )
    return page.encode(encoding)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()
