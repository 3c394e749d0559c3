"""Build tests/data/answers_faq.json: ~600 FAQ entries for the held-out instant-answer evaluation.

Two parts, both deterministic (no randomness):

- clause FAQ: for every policy of tests/data/answers_policies.json, one entry per headed clause
  ("二、奖励标准：…" → 「<policy>的奖励标准是什么？」 answered by that clause), related to that policy —
  what a city's curated FAQ about its own policies looks like;
- generic enterprise-service FAQ written by the team: 45 common matters (licences, tax, social insurance,
  customs …) × 10 question kinds (conditions, materials, where, how long, fees, online, steps, phone,
  progress, rejection), answered in general terms and related to no policy.

Usage: python scripts/build_answers_faq.py [policies.json] [out.json]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
HEADING = re.compile(r"^(?:[一二三四五六七八九十]+、|第[一二三四五六七八九十]+条\s*)([^：:，。]{2,12})[：:](.+)$")

TOPICS = [  # (matter, department, working days)
    ("营业执照设立登记", "市场监督管理局", 1), ("企业名称自主申报", "市场监督管理局", 1),
    ("法定代表人变更登记", "市场监督管理局", 3), ("企业住所变更登记", "市场监督管理局", 3),
    ("个体工商户转型为企业", "市场监督管理局", 3), ("企业简易注销", "市场监督管理局", 20),
    ("企业年度报告公示", "市场监督管理局", 1), ("移出经营异常名录", "市场监督管理局", 5),
    ("食品经营许可证办理", "市场监督管理局", 10), ("药品经营许可证办理", "市场监督管理局", 20),
    ("第二类医疗器械经营备案", "市场监督管理局", 1), ("道路货物运输经营许可", "交通运输局", 10),
    ("建筑工程施工许可证", "住房和城乡建设局", 7), ("建设工程消防验收备案", "住房和城乡建设局", 5),
    ("企业档案查询", "市场监督管理局", 1), ("取水许可审批", "水务局", 20),
    ("增值税发票领用", "税务局", 1), ("税务登记信息变更", "税务局", 1),
    ("出口退（免）税备案", "税务局", 2), ("个人所得税扣缴申报", "税务局", 1),
    ("单位社会保险参保登记", "人力资源和社会保障局", 1), ("职工社保增员减员", "人力资源和社会保障局", 1),
    ("工伤认定申请", "人力资源和社会保障局", 60), ("住房公积金单位缴存登记", "住房公积金管理中心", 1),
    ("住房公积金缴存基数调整", "住房公积金管理中心", 3), ("劳动合同用工备案", "人力资源和社会保障局", 1),
    ("人力资源服务许可证", "人力资源和社会保障局", 20), ("劳务派遣经营许可", "人力资源和社会保障局", 20),
    ("企业银行账户变更", "人民银行分支机构", 1), ("商标注册申请", "知识产权局", 180),
    ("专利费用减缴备案", "知识产权局", 5), ("作品著作权登记", "版权局", 30),
    ("海关进出口货物收发货人备案", "海关", 1), ("对外贸易经营者备案", "商务局", 5),
    ("原产地证书申领", "贸促会", 1), ("特种设备使用登记", "市场监督管理局", 15),
    ("强制检定计量器具检定", "市场监督管理局", 10), ("安全生产许可证", "应急管理局", 45),
    ("烟花爆竹零售经营许可", "应急管理局", 20), ("公章刻制备案", "公安局", 1),
    ("企业银行基本存款账户开立", "人民银行分支机构", 1), ("企业不动产转移登记", "自然资源局", 5),
    ("城市道路占用挖掘许可", "城市管理局", 10), ("户外广告设置许可", "城市管理局", 10),
    ("政府采购供应商注册", "财政局", 3),
]  # fmt: skip

KINDS = [
    (
        "{m}需要满足什么条件？",
        "办理{m}需符合法律法规和{d}公布的办事指南所列条件，材料真实完整；具体条件以当地{d}最新办事指南为准。",
    ),
    (
        "办理{m}要准备哪些材料？",
        "办理{m}一般需提交申请表、营业执照、经办人身份证明及办事指南列明的其他材料；材料清单以{d}办事指南为准。",
    ),
    ("{m}在哪里办理？", "{m}可到当地政务服务中心{d}窗口办理，也可登录政务服务网在线提交。"),
    ("{m}多长时间能办好？", "{m}的承诺办结时限一般为{n}个工作日，材料齐全、符合法定形式的按承诺时限办结。"),
    ("办理{m}要收费吗？", "{m}按国家规定执行收费政策，无收费依据的一律不收费；涉及的费用以{d}公示为准。"),
    ("{m}可以网上办吗？", "{m}已纳入“一网通办”，可通过政务服务网或政务服务移动端在线申请，部分事项需到现场核验。"),
    ("{m}的办理流程是怎样的？", "{m}的一般流程为：申请、受理、审查、决定、送达；{d}在受理后按承诺时限作出决定。"),
    ("{m}的咨询电话是多少？", "咨询{m}可拨打12345政务服务便民热线，或拨打当地{d}公布的咨询电话。"),
    ("{m}办理进度怎么查？", "{m}的办理进度可登录政务服务网“我的办件”查询，也可凭受理回执向{d}窗口查询。"),
    (
        "{m}申请被退回了怎么办？",
        "{m}申请被退回的，请按退回意见补正材料后重新提交；对决定有异议的，可依法申请行政复议或提起行政诉讼。",
    ),
]


def clause_faq(policies: list[dict]) -> list[dict]:
    out = []
    for p in policies:
        name = re.sub(r"（[^）]*）$", "", p["title"])
        for line in p["full_text"].split("\n"):
            m = HEADING.match(line.strip())
            if not m:
                continue
            heading, body = m.group(1).strip(), m.group(2).strip()
            out.append(
                {
                    "question": f"{name}的{heading}是什么？",
                    "answer": body,
                    "keywords": [],
                    "related_policies": [p["title"]],
                }
            )
    return out


def generic_faq() -> list[dict]:
    return [
        {"question": q.format(m=m), "answer": a.format(m=m, d=d, n=n), "keywords": [m], "related_policies": []}
        for m, d, n in TOPICS
        for q, a in KINDS
    ]


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "answers_policies.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else DATA / "answers_faq.json"
    entries = clause_faq(json.loads(src.read_text(encoding="utf-8"))) + generic_faq()
    for i, e in enumerate(entries, 1):
        e["code"] = f"eval-faq-{i:03d}"
    dst.write_text(json.dumps(entries, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(entries)} entries → {dst}")


if __name__ == "__main__":
    main()
