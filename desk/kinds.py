"""Guess the kind of an enquiry (咨询 / 求助 / 投诉 / 举报 / 建议) from its words.

Firms seldom say which kind their message is; hotline operators and web forms often leave it out.
The rules below are cues with weights: an explicit declaration ("我要投诉", "实名举报", "提个建议")
weighs most, typical phrasing ("态度恶劣", "偷排", "能不能帮忙协调", "请问……怎么申请") less. Each
kind's score is the sum of the weights of its cues found in the normalised text (traditional
characters folded to simplified); the best kind wins. Confidence is the winner's share against
the runner-up and a constant prior:

    confidence = best / (best + runner_up + PRIOR)

so one explicit declaration alone gives 0.75, a single weak cue 0.5, competing cues less. With no
cue at all the text is taken as a consultation (the commonest kind) with confidence 0.2 — a
guess that staff are expected to correct (``kind_detected`` stays True on the case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.text import normalize
from desk.sla import KINDS, Kind

PRIOR = 1.0  # the "none of the above" mass in the confidence's denominator
DEFAULT_KIND: Kind = "consultation"
DEFAULT_CONFIDENCE = 0.2

STRONG = 3.0  # the firm names the kind itself
MEDIUM = 2.0  # phrasing that is typical of the kind
WEAK = 1.0  # phrasing that leans towards the kind


@dataclass(frozen=True)
class Cue:
    """A pattern (regular expression over normalised text) that points to a kind, with its weight."""

    kind: Kind
    pattern: re.Pattern[str]
    weight: float


def _cues(kind: Kind, weight: float, *patterns: str) -> list[Cue]:
    return [Cue(kind, re.compile(p), weight) for p in patterns]


CUES: tuple[Cue, ...] = tuple(
    # 投诉 complaint: dissatisfaction with how a public body or its staff behaved.
    _cues("complaint", STRONG, r"(我|我们|本公司|我司|特此)(要|想|需要)?投诉", r"投诉[:：]", r"实名投诉")
    + _cues(
        "complaint",
        MEDIUM,
        r"投诉",
        r"态度(恶劣|很差|极差|太差|差|蛮横|冷漠|生硬)",
        r"推诿|推脱|踢皮球|互相推",
        r"刁难|吃拿卡要|故意拖",
        r"不作为|慢作为|乱作为",
        r"乱收费|违规收费|多收费|收费不合理",
        r"(一直|迟迟|始终|至今)(不|没|未)(办|批|给|回复|处理|兑现|拨付|发放|到账)",
        r"(没有?人|无人)(管|理|受理|处理|回复)",
        r"一拖再拖|拖了(好几|几|半|一|两|三)",
        r"不满意|很不满|非常不满|差评",
        r"(半年|[一二两三四五六七八九十几好多半\d]+个?(月|周|星期|天|日|工作日|年))多?了?[，,]?(还|也|都|仍|仍然|依然)(没|未|不|在|显示|是)",
        r"(不肯|不给|拒不|拒绝)(退|赔|处理|执行|办|兑现)|被拒|不退(款|费|钱)|不(执行|落实|兑现)",
        r"(还|也|都|却)?没(有)?人(来|理|管|接|回|通知|处理|答复)",
        r"每次(的)?(说法|要求|答复|回复|标准)?都不一样|说法不一",
        r"来回跑|跑了[一二两三四五六七八九十几好多半\d]+(趟|次)",
        r"(退回|驳回|打回)了?[一二两三四五六七八九十几好多半\d]+次",
        r"多收|强制(要求|搭配|购买)|捆绑|搭售|必须(搭配|购买)",
    )
    + _cues(
        "complaint",
        WEAK,
        r"多次(反映|打电话|找)",
        r"(不|拒绝)(给|予)?受理",
        r"敷衍",
        r"不合理",
        r"也不(告诉|说明|解释|通知)",
        r"过了(法定)?(时限|期限)",
    )
    # 举报 report: someone else breaking the law or the rules.
    + _cues("report", STRONG, r"(我|我们|本人)?(要|想)?(实名)?举报", r"举报[:：]", r"检举|揭发")
    + _cues(
        "report",
        MEDIUM,
        r"偷排|偷倒|违法排(污|放)|直排|乱排",
        r"骗取(补贴|补助|资金|奖励)|骗补|套取(补贴|补助|资金)|虚报",
        r"偷税|漏税|逃税|虚开(增值税)?发票",
        r"假冒|冒牌|山寨|侵权产品|盗版",
        r"无证(经营|生产)|黑作坊|非法(经营|生产|用工|占用)",
        r"行贿|受贿|索贿|贪污|收(受)?好处|红包",
        r"违法|违规(行为|操作|经营|生产)",
        r"某.{0,5}(公司|企业|单位|商家|店|厂|中介|平台|机构|KTV|ktv)|某(家|个|人)",
        r"伪造|黄牛|没有.{0,6}(资质|许可证|注册证|执照)",
        r"查处|请.{0,6}(查一下|查查|查处|调查)",
        r"冒用|冒充|非法集资|传销|禁用|明令淘汰|未经(许可|批准|审批)|没有?经过(任何)?(审核|审批|许可)",
        r"骗(取)?(出口)?退税|规避(公开)?招标|围标|串标",
    )
    + _cues(
        "report",
        WEAK,
        r"线索",
        r"涉嫌|疑似",
        r"私自|擅自|偷偷",
        r"(发现|听说)有",
        r"(?<![没])有(人|企业|公司|中介|商家|网贷平台|外贸公司|农资店)(在|还在|承诺|冒|打着|假借|以)",
    )
    # 求助 help: the firm has a problem and asks the government to act.
    + _cues("help", STRONG, r"求助|求救|救急|紧急求助")
    + _cues(
        "help",
        MEDIUM,
        r"(帮|帮忙|帮帮|帮助|协助|协调|出面)(我们|我司|企业|一下|解决|处理|协调|联系|催|看看)",
        r"请(政府|你们|有关部门|相关部门)?(帮|协调|协助|出面|支持)",
        r"能不能帮|能否帮|可否帮|可以帮",
        r"急需|燃眉之急|快撑不下去|撑不住|经营困难|资金链",
        r"(停电|停水|断电|断水|停气)",
        r"被拖欠|拖欠(我们|货款|工程款|工资)",
        r"(能不能|能否|可否|可不可以|请)(派|安排|调整|先|尽快|加急|通融)",
        r"提示.{0,12}(错误|不存在|失败|异常)|(打不开|登不上|登录不了|无法登录|上传失败)",
    )
    + _cues(
        "help",
        WEAK,
        r"(?<![证照记案批续务])怎么办(?!理)",
        r"困难",
        r"解决不了|没办法|无法解决",
        r"招工难|融资难|用地难",
        r"急[。！!]?$|很急|着急|(马上|明天|快)(就)?(要)?截止",
        r"被(冻结|退回|列入|列为|查封|停|扣)",
        r"不知道(怎么|如何|该)|忘了|遗失|丢失|离职",
    )
    # 建议 suggestion: an idea for doing things better.
    + _cues("suggestion", STRONG, r"我们?(想|要)?建议|提(出)?(一个|几点|个|点|些)?建议|建议[:：]", r"提议|倡议|呼吁")
    + _cues(
        "suggestion",
        MEDIUM,
        r"希望(政府|政策|有关部门|相关部门|市里|区里|你们|平台|能够?|可以|尽快|进一步|多|把|.{0,6}(部门|局|委|办)(能|可以|把|多|牵头|组织|出台|增加))",
        r"(能否|可否|是否可以|能不能|可不可以)(增加|增设|简化|延长|放宽|取消|合并|优化|提高|扩大|降低|开通|出台)",
        r"(应该|应当|最好)(增加|增设|简化|延长|放宽|取消|合并|优化|提高|扩大|降低|开通|出台)",
        r"意见和建议|意见建议|合理化建议",
        r"建议",
    )
    + _cues("suggestion", WEAK, r"优化|改进|完善|简化", r"更(方便|便捷|高效)", r"希望")
    # 咨询 consultation: a question about a policy, a procedure, a requirement.
    + _cues("consultation", STRONG, r"(我|我们)?(想|要)?咨询", r"咨询[:：]", r"请问|问一下|想了解|想问")
    + _cues(
        "consultation",
        MEDIUM,
        r"(怎么|怎样|如何|在哪里?|去哪里?|哪里可以)(申请|申报|办理|领取|认定|备案|享受|报名|提交|查询|兑现)",
        r"(需要|要)(哪些|什么)(材料|条件|资料|手续)",
        r"(证|照|登记|备案|审批|手续|执照|许可)(要)?怎么办",
        r"(是否|能否|可否|能不能|可不可以|可以)(享受|申请|申报|领取|办理|叠加|同时)",
        r"(多少|多久|几天|什么时候|何时|有哪些|有没有|是不是|是否)",
    )
    + _cues("consultation", WEAK, r"[?？]|吗[。！!]?$|呢[。]?$", r"条件|流程|标准|期限|截止")
)


def kind_scores(text: str) -> dict[Kind, float]:
    """Return the summed cue weight of every kind found in text (0 for kinds without a cue)."""
    clean = normalize(text)
    scores: dict[Kind, float] = dict.fromkeys(KINDS, 0.0)
    if not clean:
        return scores
    for cue in CUES:
        if cue.pattern.search(clean):
            scores[cue.kind] += cue.weight
    return scores


def detect_kind(text: str) -> tuple[Kind, float]:
    """Guess an enquiry's kind from its text; return (kind, confidence in [0, 1]).

    Ties go to the earlier kind of the order report, complaint, help, suggestion, consultation:
    a message that both asks a question and complains is a complaint to whoever handles it.
    """
    scores = kind_scores(text)
    order: tuple[Kind, ...] = ("report", "complaint", "help", "suggestion", "consultation")
    ranked = sorted(order, key=lambda k: (-scores[k], order.index(k)))
    best, runner_up = ranked[0], ranked[1]
    if scores[best] <= 0:
        return DEFAULT_KIND, DEFAULT_CONFIDENCE
    confidence = scores[best] / (scores[best] + scores[runner_up] + PRIOR)
    return best, round(confidence, 3)
