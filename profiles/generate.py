"""Deterministic, realistic synthetic enterprises for demos, benchmarks and matching experiments.

The population imitates a Pearl River Delta economy centred on Zhongshan: mostly small and micro
firms, manufacturing clusters (灯饰, 家电, 五金, 服装, 红木家具, 电子), trade and services around them.
Attributes are drawn jointly so they hang together: revenue follows headcount and industry, R&D
spending follows the industry's technology level, and qualifications are granted only to firms that
plausibly meet their conditions. About a fifth of profiles leave some fields empty, as real ones do.

Everything is a function of the seed (one `random.Random` for the stream, one seeded Faker for the
word pools) and of `today`; global random state and the clock are never read.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from faker import Faker

from core import codes
from profiles import derived, uscc
from profiles.sizing import size_class

# --------------------------------------------------------------------------- regions

# (GB/T 2260 code, share of firms in percent). Zhongshan (no county-level districts) dominates,
# then the neighbouring Pearl River Delta cities.
REGION_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("442000", 45.0),  # 中山市
    ("440606", 6.5),  # 佛山 顺德
    ("440605", 5.0),  # 佛山 南海
    ("440604", 3.5),  # 佛山 禅城
    ("440607", 1.2),  # 佛山 三水
    ("440608", 0.8),  # 佛山 高明
    ("440106", 2.8),  # 广州 天河
    ("440113", 2.2),  # 广州 番禺
    ("440111", 2.2),  # 广州 白云
    ("440112", 1.4),  # 广州 黄埔
    ("440105", 1.2),  # 广州 海珠
    ("440104", 1.0),  # 广州 越秀
    ("440114", 1.0),  # 广州 花都
    ("440115", 0.9),  # 广州 南沙
    ("440103", 0.5),  # 广州 荔湾
    ("440118", 0.5),  # 广州 增城
    ("440117", 0.3),  # 广州 从化
    ("440305", 2.8),  # 深圳 南山
    ("440306", 2.8),  # 深圳 宝安
    ("440307", 2.2),  # 深圳 龙岗
    ("440304", 1.5),  # 深圳 福田
    ("440309", 1.4),  # 深圳 龙华
    ("440303", 0.6),  # 深圳 罗湖
    ("440311", 0.5),  # 深圳 光明
    ("440310", 0.3),  # 深圳 坪山
    ("440308", 0.2),  # 深圳 盐田
    ("441900", 6.0),  # 东莞市
    ("440402", 2.0),  # 珠海 香洲
    ("440404", 0.8),  # 珠海 金湾
    ("440403", 0.7),  # 珠海 斗门
    ("440700", 1.0),  # 江门市
    ("441300", 0.8),  # 惠州市
    ("441200", 0.3),  # 肇庆市
)

_AREA_CODES = {
    "4420": "0760",
    "4406": "0757",
    "4401": "020",
    "4403": "0755",
    "4419": "0769",
    "4404": "0756",
    "4407": "0750",
    "4413": "0752",
    "4412": "0758",
}

# Districts whose firms usually carry the district in their registered name (佛山市顺德区…).
_DISTRICT_IN_NAME = {"440606": 0.7, "440605": 0.6, "440403": 0.3}

# --------------------------------------------------------------------------- industries


@dataclass(frozen=True)
class Economics:
    """How firms of a kind of business are shaped: headcount, productivity, balance sheet."""

    employees_median: float
    revenue_per_head: float  # 万元 per employee, median
    assets_to_revenue: float  # total assets / revenue, median


ECONOMICS: dict[str, Economics] = {
    "mfg": Economics(32, 28, 0.9),
    "mfg_tech": Economics(36, 34, 1.0),
    "wholesale": Economics(9, 60, 0.5),
    "retail": Economics(8, 20, 0.5),
    "catering": Economics(15, 7, 0.6),
    "hotel": Economics(20, 8, 2.0),
    "software": Economics(20, 18, 0.8),
    "rd": Economics(16, 16, 1.0),
    "business": Economics(10, 18, 1.0),
    "construction": Economics(30, 35, 1.3),
    "transport": Economics(16, 20, 0.9),
    "agri": Economics(14, 10, 1.5),
    "resident": Economics(8, 7, 0.6),
    "property": Economics(20, 7, 1.5),
    "culture": Economics(10, 10, 1.0),
    "utility": Economics(25, 80, 4.0),
    "environment": Economics(20, 20, 1.2),
}

# R&D behaviour by technology level: (share of firms spending on R&D, median R&D/revenue in percent).
RD_PROFILE: dict[str, tuple[float, float]] = {
    "high": (0.78, 5.0),
    "mid": (0.42, 3.0),
    "low": (0.10, 1.2),
    "none": (0.02, 0.8),
}
EMPLOYEES_SIGMA = 1.3  # log-normal spread of headcount: ~85 % under 100, a few over 1000
RD_RATIO_CAP = 15.0  # percent; the generator keeps R&D intensity within 0–15 %

# Needs phrase bank per group; a firm draws from its group's bank and the common one.
NEEDS: dict[str, tuple[str, ...]] = {
    "common": (
        "希望了解小微企业普惠性税收减免政策",
        "需要流动资金贷款，想了解贷款贴息和政策性担保",
        "想了解社保补贴和稳岗返还的申领条件",
        "招工难，想了解稳岗和扩岗补贴",
        "希望降低融资成本，了解应急转贷资金",
        "想了解新招用重点群体人员的税收扣减",
        "希望有专人提供政策申报辅导",
        "经营场地租金压力大，想了解租金减免政策",
        "想了解六税两费减征政策",
        "员工技能提升需求大，想申请职业技能培训补贴",
        "希望对接银行获得信用贷款",
    ),
    "manufacturing": (
        "计划购置新设备进行技术改造，想了解技改奖补",
        "想申请设备更新贷款贴息",
        "计划建设数字化车间，想了解智能化改造补助",
        "希望了解首台（套）装备奖励",
        "需要扩建厂房，想了解工业用地和产业园区政策",
        "想申请绿色工厂和节能改造补贴",
        "原材料价格上涨，需要流动资金贷款贴息",
        "希望参加专精特新培育，了解认定条件",
        "想了解工业互联网上云上平台补贴",
    ),
    "tech": (
        "希望了解研发费用加计扣除和高企认定奖励",
        "想申请研发投入后补助",
        "计划申报科技型中小企业入库",
        "想了解知识产权质押融资和专利资助",
        "需要引进研发人才，想了解人才引进补贴和安家补贴",
        "想申报省级工程技术研究中心",
        "希望使用创新券购买检测和研发服务",
        "希望对接高校开展产学研合作",
    ),
    "export": (
        "计划参加境外展会，想申请展会补贴",
        "想了解出口信用保险保费补贴",
        "希望了解出口退税办理进度和政策",
        "想拓展跨境电商业务，了解跨境电商扶持政策",
        "想了解外贸企业稳订单拓市场的支持措施",
    ),
    "consumer": (
        "想参与政府促消费活动和消费券发放",
        "希望了解限额以上商贸企业入库奖励",
        "门店装修升级，想了解商贸企业升级改造补贴",
        "希望参加品牌餐饮评选和老字号认定",
        "想了解夜间经济和步行街商户扶持政策",
        "想开设新门店，了解连锁经营扶持政策",
    ),
    "construction": (
        "想了解建筑业企业资质升级奖励",
        "工程款回款慢，需要应收账款融资",
        "希望了解建筑业企业增产增效奖励",
        "想了解装配式建筑项目补贴",
    ),
    "transport": (
        "想了解物流企业车辆更新补贴",
        "希望申请国家A级物流企业认定奖励",
        "想了解新能源货车购置补贴和通行优惠",
        "计划建设冷链仓库，想了解物流园区扶持政策",
    ),
    "agri": (
        "想申报农业产业化龙头企业",
        "希望了解农业保险保费补贴",
        "想申请农业机械购置补贴",
        "需要冷链仓储设施建设补助",
        "想了解现代农业产业园项目扶持",
    ),
    "services": (
        "想了解服务业发展专项资金申报",
        "希望申请人力资源服务机构奖励",
        "想了解科技服务机构的绩效奖励",
        "希望承接政府购买服务项目",
        "想了解总部企业认定和奖励",
    ),
    "startup": (
        "刚成立不久，想了解创业担保贷款和一次性创业资助",
        "想入驻孵化器，了解场地租金补贴",
        "希望了解初创企业社保补贴",
    ),
}

# Which needs bank each economics group draws from.
_NEEDS_GROUP = {
    "mfg": "manufacturing",
    "mfg_tech": "manufacturing",
    "wholesale": "export",
    "retail": "consumer",
    "catering": "consumer",
    "hotel": "consumer",
    "software": "tech",
    "rd": "tech",
    "business": "services",
    "construction": "construction",
    "transport": "transport",
    "agri": "agri",
    "resident": "services",
    "property": "services",
    "culture": "services",
    "utility": "manufacturing",
    "environment": "services",
}

_SCOPE_TAIL = "（除依法须经批准的项目外，凭营业执照依法自主开展经营活动）"
_TECH_SCOPE = "技术服务、技术开发、技术咨询、技术交流、技术转让、技术推广"
_TRADE_SCOPE = "货物进出口；技术进出口"


@dataclass(frozen=True)
class Trade:
    """One line of business: its GB/T 4754 code, frequency, economics and the words firms use."""

    code: str
    weight: float
    economics: str
    tech: str  # high / mid / low / none
    words: tuple[str, ...]  # middle part of the firm name (灯饰, 电器科技 …)
    products: tuple[str, ...]
    scope: tuple[str, ...]
    towns: tuple[str, ...] = ()  # Zhongshan towns known for the trade, used in some names


def _trade(
    code: str, weight: float, economics: str, tech: str, words: str, products: str, scope: str, towns: str = ""
) -> Trade:
    split = lambda s: tuple(x for x in s.split("|") if x)  # noqa: E731
    return Trade(code, weight, economics, tech, split(words), split(products), split(scope), split(towns))


# Weights are relative shares of firms (all trades sum to roughly 110). Kept as a compact table.
# fmt: off
TRADES: tuple[Trade, ...] = (
    # ---- 制造业: 电气机械 (灯饰、家电)
    _trade("C387", 7.0, "mfg", "mid", "灯饰|照明电器|光电科技|灯饰科技|照明科技|灯具",
           "LED吊灯|水晶灯|吸顶灯|筒灯射灯|户外庭院灯|智能照明控制系统|LED灯带|商业照明灯具|灯饰配件",
           "灯饰、灯具及配件的研发、生产和销售|照明器具制造|照明器具销售|LED照明产品设计|城市及道路照明工程施工|五金产品零售",
           "古镇|横栏"),
    _trade("C385", 4.0, "mfg", "mid", "电器|家电|电器科技|智能电器|电器制造",
           "电风扇|电饭煲|空气炸锅|吸油烟机|电暖器|小家电|净水器|电热水壶|破壁机",
           "家用电器研发|家用电器制造|家用电器销售|家用电器零配件销售|模具制造|智能家庭消费设备制造",
           "东凤|南头|黄圃"),
    _trade("C386", 0.8, "mfg", "mid", "燃具|厨卫电器|热能科技",
           "燃气灶|燃气热水器|太阳能热水器|集成灶",
           "燃气器具生产|家用电器制造|厨具卫具及日用杂品批发|五金产品制造", "东凤|南头"),
    _trade("C381", 1.0, "mfg", "mid", "电机|机电|电机科技", "微型电机|直流无刷电机|伺服电机|减速电机",
           "电机制造|微特电机及组件制造|电机及其控制系统研发|机械电气设备销售"),
    _trade("C382", 1.0, "mfg", "mid", "电气|电力设备|电气科技", "高低压配电柜|开关柜|箱式变电站|低压电器",
           "配电开关控制设备制造|输配电及控制设备制造|电力设施器材销售|智能输配电及控制设备销售"),
    _trade("C383", 0.7, "mfg", "low", "电线电缆|线缆|电工材料", "电线电缆|光缆|漆包线|电源线",
           "电线、电缆制造|电工器材制造|光缆销售|电力电子元器件销售"),
    _trade("C3841", 0.8, "mfg_tech", "high", "新能源科技|电池|储能科技", "锂离子电池|储能电池组|电池管理系统|动力电池模组",
           "电池制造|电池零配件生产|储能技术服务|新兴能源技术研发|电池销售"),
    # ---- 电子
    _trade("C3982", 1.5, "mfg_tech", "high", "电子|电路科技|线路板", "PCB线路板|柔性线路板|SMT贴片加工|电路板组件",
           "电子元器件制造|电子电路制造|电子专用材料研发|电子产品销售"),
    _trade("C3952", 1.2, "mfg_tech", "mid", "音响|电声科技|音响科技", "专业音响|蓝牙音箱|功放|KTV音响设备",
           "音响设备制造|音响设备销售|电子产品销售|舞台灯光音响设备租赁"),
    _trade("C3984", 0.8, "mfg_tech", "mid", "电声|电子|声学科技", "扬声器|受话器|耳机|麦克风",
           "电声器件及零件制造|电子元器件制造|电子产品销售"),
    _trade("C3975", 1.0, "mfg_tech", "high", "光电|半导体照明|光电科技", "LED灯珠|LED芯片封装|LED显示模组|UV LED光源",
           "半导体照明器件制造|光电子器件制造|半导体照明器件销售|电子专用材料研发"),
    _trade("C3922", 0.8, "mfg_tech", "high", "通信|通讯科技|智能科技", "智能手机配件|对讲机|通信模块|路由器",
           "通信设备制造|移动终端设备制造|通信设备销售|物联网设备制造"),
    _trade("C3969", 0.8, "mfg_tech", "high", "智能科技|智能家居|智能设备", "智能门锁|扫地机器人|智能音箱|智能家居控制面板",
           "智能家庭消费设备制造|智能家庭消费设备销售|物联网技术研发|人工智能应用软件开发"),
    _trade("C3983", 0.6, "mfg_tech", "high", "传感科技|传感器|电子科技", "温湿度传感器|压力传感器|红外传感器",
           "敏感元件及传感器制造|电子元器件制造|仪器仪表销售"),
    _trade("C3914", 0.5, "mfg_tech", "high", "自动化|工控科技|控制技术", "PLC控制器|工业触摸屏|运动控制卡",
           "工业控制计算机及系统制造|工业自动控制系统装置制造|软件开发"),
    _trade("C3912", 0.4, "mfg_tech", "high", "电脑配件|电子科技", "电脑电源|散热器|机箱|键盘鼠标",
           "计算机软硬件及外围设备制造|计算机零部件制造|电子产品销售"),
    _trade("C3989", 1.0, "mfg_tech", "mid", "电子|电子科技|电子元件", "变压器|电感线圈|连接器|开关电源",
           "电子元器件制造|电子元器件批发|电子产品销售"),
    # ---- 金属制品 (五金)
    _trade("C33", 6.0, "mfg", "low", "五金|五金制品|金属制品|锁业|卫浴|五金塑料",
           "门锁|合页|拉手|卫浴五金|不锈钢制品|厨房五金|建筑五金|铝合金门窗配件|金属冲压件",
           "五金产品制造|五金产品研发|金属制品销售|金属表面处理及热处理加工|建筑用金属配件制造|卫生洁具制造",
           "小榄|东升|东凤"),
    # ---- 通用/专用设备
    _trade("C342", 0.8, "mfg", "mid", "机械|机械设备|数控科技", "数控机床|激光切割机|折弯机|冲床",
           "金属切削机床制造|金属成形机床制造|机械设备销售|数控机床销售"),
    _trade("C344", 0.8, "mfg", "mid", "泵业|阀门|流体科技", "水泵|阀门|空压机|真空泵",
           "泵及真空设备制造|阀门和旋塞研发|气体压缩机械制造|机械零件、零部件加工"),
    _trade("C346", 0.6, "mfg", "mid", "包装机械|机械|智能装备", "全自动包装机|贴标机|封箱机|工业风机",
           "包装专用设备制造|风机、风扇制造|机械设备研发|通用设备修理"),
    _trade("C348", 0.8, "mfg", "mid", "精密机械|精工|机械", "精密齿轮|轴承|紧固件|弹簧",
           "通用零部件制造|齿轮及齿轮减、变速箱制造|机械零件、零部件加工|紧固件制造"),
    _trade("C3491", 0.4, "mfg_tech", "high", "机器人|智能装备|自动化科技", "工业机器人|机械手|自动化生产线|视觉检测设备",
           "工业机器人制造|工业机器人安装、维修|智能基础制造装备制造|人工智能行业应用系统集成服务"),
    _trade("C358", 0.8, "mfg_tech", "high", "医疗器械|医疗科技|健康科技", "电子血压计|雾化器|康复器械|医用导管|体温计",
           "第二类医疗器械生产|第一类医疗器械生产|医疗设备租赁|第二类医疗器械销售"),
    _trade("C356", 0.6, "mfg_tech", "high", "自动化设备|智能装备|精密设备", "贴片机|点胶机|自动化组装设备|电子检测设备",
           "电子专用设备制造|电子元器件与机电组件设备制造|专用设备修理"),
    _trade("C353", 0.4, "mfg", "mid", "食品机械|机械", "烘焙设备|灌装机|饮料生产线",
           "食品、酒、饮料及茶生产专用设备制造|农副食品加工专用设备制造|机械设备销售"),
    _trade("C359", 0.6, "mfg", "mid", "环保设备|环保科技|环境技术", "废气处理设备|污水处理设备|除尘设备",
           "环境保护专用设备制造|大气污染治理|水污染治理|环保咨询服务"),
    # ---- 服装、纺织
    _trade("C18", 4.0, "mfg", "low", "服饰|制衣|服装|时装", "休闲服装|牛仔服|针织T恤|童装|内衣|工作服",
           "服装制造|服饰制造|服装服饰批发|服装辅料销售|针纺织品销售", "沙溪|大涌"),
    _trade("C17", 1.0, "mfg", "low", "纺织|织造|针织", "针织面料|牛仔布|家纺床品|无纺布",
           "面料纺织加工|针织或钩针编织物及其制品制造|家用纺织制成品制造|产业用纺织制成品生产"),
    # ---- 化工、医药、橡塑
    _trade("C26", 2.0, "mfg", "mid", "化工|新材料|涂料|日用化工", "水性涂料|胶粘剂|洗发水|沐浴露|油墨|合成树脂",
           "化工产品生产（不含许可类化工产品）|涂料制造（不含危险化学品）|日用化学产品制造|新材料技术研发|专用化学产品销售"),
    _trade("C274", 0.4, "mfg_tech", "high", "制药|药业|中药", "中成药|颗粒剂|口服液|凉茶",
           "药品生产|中药饮片代加工|药品批发|保健食品生产"),
    _trade("C272", 0.4, "mfg_tech", "high", "药业|制药|生物医药", "片剂|胶囊剂|注射剂|外用制剂",
           "药品生产|药品委托生产|医学研究和试验发展|药品进出口"),
    _trade("C276", 0.3, "mfg_tech", "high", "生物科技|生物医药|生物技术", "诊断试剂|疫苗|重组蛋白|细胞培养基",
           "生物药品制造|生物化工产品技术研发|第三类医疗器械经营|细胞技术研发和应用"),
    _trade("C277", 0.4, "mfg_tech", "mid", "卫生材料|医用材料|健康科技", "医用口罩|医用敷料|棉签|医用胶布",
           "卫生用品和一次性使用医疗用品生产|第二类医疗器械生产|劳动保护用品生产"),
    _trade("C29", 2.0, "mfg", "low", "塑料|塑胶|橡塑|塑胶制品", "注塑件|塑料包装袋|橡胶密封件|塑料管材|吹塑瓶",
           "塑料制品制造|橡胶制品制造|模具制造|塑料制品销售"),
    # ---- 其他制造
    _trade("C21", 2.0, "mfg", "low", "家具|红木家具|家居|红木", "红木家具|实木家具|办公家具|定制橱柜|沙发",
           "家具制造|家具销售|家具零配件生产|木材加工|家居用品销售", "大涌|三乡"),
    _trade("C14", 1.0, "mfg", "low", "食品|食品科技|饼业", "腊味|杏仁饼|烘焙食品|调味品|凉果",
           "食品生产|食品销售|食用农产品初加工|保健食品（预包装）销售", "黄圃|南区"),
    _trade("C13", 0.7, "mfg", "low", "饲料|食品|农产品加工", "配合饲料|水产品加工|米粉|冷冻食品",
           "饲料生产|水产品加工|粮食加工食品生产|食用农产品批发"),
    _trade("C24", 1.0, "mfg", "low", "工艺|玩具|游艺科技|文体用品", "工艺礼品|毛绒玩具|游艺设备|体育用品|乐器",
           "工艺美术品及礼仪用品制造|玩具制造|游艺及娱乐用品制造|体育用品及器材制造", "港口"),
    _trade("C401", 0.4, "mfg_tech", "high", "仪器仪表|仪表|测控技术", "电工仪表|流量计|温控仪表|电能表",
           "仪器仪表制造|电工仪器仪表制造|仪器仪表销售|智能仪器仪表制造"),
    _trade("C402", 0.3, "mfg_tech", "high", "仪器|检测设备|分析仪器", "环境监测仪器|实验分析仪器|汽车检测设备",
           "专用仪器制造|环境监测专用仪器仪表制造|实验分析仪器制造"),
    _trade("C367", 1.0, "mfg", "mid", "汽车配件|汽配|汽车零部件", "汽车线束|汽车灯具|摩托车配件|汽车内饰件",
           "汽车零部件及配件制造|摩托车零配件制造|汽车零配件批发|汽车装饰用品制造"),
    _trade("C30", 0.8, "mfg", "low", "陶瓷|建材|玻璃", "瓷砖|卫生陶瓷|钢化玻璃|石材制品",
           "建筑陶瓷制品加工制造|技术玻璃制品制造|建筑材料销售|非金属矿物制品制造"),
    _trade("C23", 0.5, "mfg", "low", "印刷|包装印刷|彩印", "包装彩盒|不干胶标签|画册印刷",
           "包装装潢印刷品印刷|纸制品制造|包装服务|广告设计、代理"),
    _trade("C22", 0.3, "mfg", "low", "纸品|纸业|包装材料", "瓦楞纸箱|纸管|生活用纸",
           "纸制品制造|纸和纸板容器制造|纸制品销售"),
    # ---- 批发
    _trade("F517", 4.0, "wholesale", "low", "贸易|商贸|实业|供应链|进出口", "机械设备|五金产品|电子元器件|灯具配件|电线电缆",
           "五金产品批发|机械设备销售|电子元器件批发|电气设备销售|国内贸易代理|供应链管理服务"),
    _trade("F513", 2.0, "wholesale", "none", "贸易|服饰贸易|商贸", "服装|鞋帽|床上用品|日用百货",
           "服装服饰批发|针纺织品及原料销售|日用百货销售|鞋帽批发"),
    _trade("F516", 2.0, "wholesale", "none", "建材|贸易|化工贸易", "建筑材料|化工原料|塑料原料|钢材",
           "建筑材料销售|化工产品销售（不含许可类化工产品）|金属材料销售|塑料制品销售"),
    _trade("F512", 2.0, "wholesale", "none", "食品贸易|商贸|贸易", "预包装食品|酒水饮料|粮油|冻品",
           "食品销售|食品互联网销售|酒类经营|食用农产品批发"),
    _trade("F515", 0.7, "wholesale", "none", "医药|医疗器械|药业", "药品|医疗器械|保健品",
           "药品批发|第二类医疗器械销售|第三类医疗器械经营|保健食品（预包装）销售"),
    _trade("F511", 1.0, "wholesale", "none", "农产品|贸易|生鲜", "蔬菜水果|水产品|花卉苗木|禽蛋",
           "食用农产品批发|水产品批发|鲜肉批发|花卉种植"),
    _trade("F518", 1.0, "wholesale", "none", "贸易|进出口|国际贸易", "进出口代理|采购代理",
           "国内贸易代理|进出口代理|销售代理|货物进出口"),
    _trade("F519", 1.0, "wholesale", "none", "贸易|商贸|实业", "日用百货|办公用品|劳保用品",
           "日用百货销售|办公用品销售|劳动保护用品销售|再生资源销售"),
    # ---- 零售
    _trade("F521", 2.0, "retail", "none", "商贸|超市|百货|便利店", "日用百货|生鲜食品|烟酒",
           "日用百货销售|食品销售|烟草制品零售|食用农产品零售"),
    _trade("F522", 2.0, "retail", "none", "食品|商行|茶业", "茶叶|烟酒|糕点|水果",
           "食品销售|酒类经营|茶具销售|食用农产品零售"),
    _trade("F523", 1.5, "retail", "none", "服饰|商贸|鞋业", "服装|鞋帽|化妆品|母婴用品",
           "服装服饰零售|鞋帽零售|化妆品零售|母婴用品销售"),
    _trade("F527", 1.5, "retail", "none", "电器|数码科技|电子商贸", "家用电器|手机|电脑|数码产品",
           "家用电器销售|通讯设备销售|计算机软硬件及辅助设备零售|家用电器安装服务"),
    _trade("F528", 1.5, "retail", "none", "建材|家居|装饰材料", "瓷砖|卫浴洁具|灯具|家具|油漆",
           "建筑装饰材料销售|家具销售|五金产品零售|卫生洁具销售"),
    _trade("F525", 1.0, "retail", "none", "大药房|医药|药店", "处方药|非处方药|保健品|医疗器械",
           "药品零售|第二类医疗器械销售|保健食品（预包装）销售|消毒剂销售（不含危险化学品）"),
    _trade("F526", 1.0, "retail", "none", "汽车销售|汽车服务|汽车贸易", "乘用车|新能源汽车|汽车配件",
           "汽车销售|新能源汽车整车销售|汽车零配件零售|二手车经销"),
    _trade("F529", 1.5, "retail", "none", "电子商务|网络科技|电商", "网店商品|直播带货|社区团购",
           "互联网销售（除销售需要许可的商品）|日用百货销售|直播电商服务|供应链管理服务"),
    # ---- 住宿餐饮
    _trade("H62", 6.0, "catering", "none", "餐饮管理|饮食|酒家|餐饮服务|食府",
           "粤菜|脆肉鲩|石岐乳鸽|早茶茶点|快餐|团餐配送|烧腊",
           "餐饮服务|餐饮管理|食品销售|外卖递送服务|酒类经营"),
    _trade("H61", 1.0, "hotel", "none", "酒店管理|酒店|宾馆", "客房住宿|会议接待|婚宴",
           "住宿服务|酒店管理|餐饮服务|会议及展览服务"),
    # ---- 软件、互联网
    _trade("I6513", 2.0, "software", "high", "信息技术|软件科技|网络科技|数字科技|智能科技",
           "企业管理软件|小程序开发|ERP系统|智慧社区平台|移动应用",
           "软件开发|信息系统集成服务|信息技术咨询服务|数据处理和存储支持服务|人工智能应用软件开发"),
    _trade("I6531", 1.2, "software", "high", "信息技术|系统集成|智能科技", "弱电工程|安防监控系统|网络设备集成|机房建设",
           "信息系统集成服务|安防设备销售|计算机系统服务|网络技术服务"),
    _trade("I6532", 0.8, "software", "high", "物联网科技|智能科技|信息技术", "物联网平台|智能电表|资产定位系统",
           "物联网技术服务|物联网应用服务|物联网设备销售|软件开发"),
    _trade("I6520", 0.3, "software", "high", "微电子|集成电路|半导体科技", "MCU芯片|电源管理芯片|LED驱动芯片",
           "集成电路设计|集成电路芯片设计及服务|集成电路销售"),
    _trade("I6540", 0.5, "software", "high", "信息技术|网络科技|数据科技", "IT运维外包|云服务运维|网络维护",
           "信息技术咨询服务|计算机系统服务|网络技术服务|运行维护服务"),
    _trade("I6560", 0.4, "software", "high", "信息咨询|数字科技|信息技术", "数字化转型咨询|信息化规划",
           "信息技术咨询服务|数字技术服务|企业管理咨询"),
    _trade("I6572", 0.4, "software", "high", "网络科技|动漫科技|游戏科技", "手机游戏|动漫设计|数字内容",
           "动漫游戏开发|数字内容制作服务|网络文化经营"),
    _trade("I6432", 0.4, "software", "high", "网络科技|互联网科技|信息科技", "本地生活服务平台|社区团购平台",
           "互联网数据服务|信息技术咨询服务|软件开发|网络技术服务"),
    _trade("I6431", 0.3, "software", "high", "供应链科技|网络科技|数字科技", "工业品采购平台|供应链服务平台",
           "互联网数据服务|供应链管理服务|软件开发|工业互联网数据服务"),
    # ---- 科研与技术服务
    _trade("M732", 1.0, "rd", "high", "科技|技术研究院|研究院|创新科技", "新材料研发|产品检测|工艺开发|技术转让",
           "工程和技术研究和试验发展|新材料技术研发|技术推广服务|检验检测服务"),
    _trade("M734", 0.3, "rd", "high", "生物科技|医药科技|健康科技", "临床前研究|医学检验|生物样本服务",
           "医学研究和试验发展|生物技术研发|健康咨询服务（不含诊疗服务）"),
    _trade("M731", 0.2, "rd", "high", "科学研究院|技术研究院|科技", "基础研究|技术研发|产学研合作",
           "自然科学研究和试验发展|科技中介服务|技术推广服务"),
    _trade("M748", 0.8, "rd", "mid", "工程设计|规划设计|工程咨询", "建筑设计|工程设计|工程造价咨询",
           "工程设计服务|工程管理服务|规划设计管理|工程造价咨询业务"),
    _trade("M745", 0.4, "rd", "mid", "检测技术|检验检测|质量技术", "产品检测|计量校准|认证咨询",
           "检验检测服务|计量技术服务|认证咨询|标准化服务"),
    _trade("M749", 0.5, "rd", "mid", "工业设计|设计|创意设计", "产品外观设计|结构设计|包装设计",
           "工业设计服务|专业设计服务|平面设计|模型设计"),
    _trade("M751", 0.6, "rd", "mid", "科技|技术服务|科技发展", "节能技术推广|农业技术推广|新技术转移",
           "技术推广服务|节能管理服务|科技推广和应用服务"),
    _trade("M752", 0.3, "rd", "mid", "知识产权|专利代理|知识产权服务", "专利代理|商标注册|知识产权贯标",
           "知识产权服务（专利代理服务除外）|商标代理|版权代理"),
    _trade("M754", 0.2, "rd", "mid", "孵化器|创业服务|众创空间", "创业孵化|众创空间运营|路演服务",
           "创业空间服务|孵化器服务|园区管理服务|企业管理咨询"),
    # ---- 商务服务
    _trade("L724", 1.5, "business", "none", "企业管理咨询|咨询|管理咨询", "企业管理咨询|财税咨询|市场调查",
           "企业管理咨询|财务咨询|市场调查（不含涉外调查）|社会经济咨询服务"),
    _trade("L725", 1.2, "business", "none", "广告|文化传媒|传媒|品牌策划", "广告设计|新媒体运营|户外广告|品牌策划",
           "广告设计、代理|广告制作|广告发布|图文设计制作|组织文化艺术交流活动"),
    _trade("L726", 1.0, "business", "none", "人力资源|人力资源服务|劳务派遣", "劳务派遣|人才招聘|人力资源外包",
           "劳务派遣服务|人力资源服务（不含职业中介活动、劳务派遣服务）|职业中介活动|业务培训"),
    _trade("L728", 0.5, "business", "none", "会展|展览|会展服务", "展会策划|展台搭建|会议服务",
           "会议及展览服务|展台设计制作|组织文化艺术交流活动"),
    _trade("L722", 0.5, "business", "none", "投资管理|实业投资|园区管理", "园区运营|资产管理|商业综合体运营",
           "园区管理服务|以自有资金从事投资活动|商业综合体管理服务"),
    _trade("L729", 1.0, "business", "none", "商务服务|企业服务|财税", "代理记账|工商注册代办|保洁服务",
           "代理记账|商务代理代办服务|专业保洁、清洗、消毒服务|票务代理服务"),
    _trade("L711", 0.4, "business", "none", "设备租赁|机械租赁|租赁", "工程机械租赁|叉车租赁|办公设备租赁",
           "机械设备租赁|建筑工程机械与设备租赁|办公设备租赁服务"),
    # ---- 建筑业
    _trade("E47", 0.8, "construction", "none", "建筑工程|建设工程|建设", "房屋建筑施工|厂房建设|住宅工程",
           "建设工程施工|房屋建筑和市政基础设施项目工程总承包|建筑劳务分包"),
    _trade("E48", 1.2, "construction", "none", "市政工程|建设工程|路桥工程|水利工程", "市政道路|桥梁工程|河道整治|管网工程",
           "市政设施管理|建设工程施工|水利工程施工|园林绿化工程施工"),
    _trade("E49", 1.0, "construction", "low", "机电工程|安装工程|电力工程", "机电安装|消防工程|电力安装",
           "建设工程施工|输电、供电、受电电力设施的安装、维修和试验|消防设施工程施工"),
    _trade("E50", 2.0, "construction", "none", "装饰工程|装饰设计|建筑装饰", "家装工程|公装工程|幕墙工程|软装设计",
           "住宅室内装饰装修|建筑装饰、水暖管道零件及其他建筑用金属制品制造|建设工程设计"),
    # ---- 交通运输
    _trade("G543", 2.5, "transport", "none", "物流|运输|货运", "整车运输|零担物流|城市配送|冷链运输",
           "道路货物运输（不含危险货物）|普通货物仓储服务|国内货物运输代理|装卸搬运"),
    _trade("G582", 1.0, "transport", "none", "国际货运代理|供应链|物流", "国际货代|报关报检|跨境物流",
           "国际货物运输代理|报关业务|报检业务|供应链管理服务"),
    _trade("G602", 0.3, "transport", "none", "快递|速运|物流", "同城快递|快件派送",
           "快递服务|邮政快递服务|国内货物运输代理"),
    _trade("G592", 0.5, "transport", "none", "仓储|仓储物流|物流", "仓储服务|冷库仓储|仓配一体化",
           "普通货物仓储服务|低温仓储|装卸搬运"),
    # ---- 农业
    _trade("A01", 1.5, "agri", "low", "农业发展|农业科技|生态农业|花木", "蔬菜种植|花卉苗木|水果种植|香蕉",
           "蔬菜种植|花卉种植|水果种植|农业专业及辅助性活动|食用农产品初加工", "横栏|民众|黄圃"),
    _trade("A04", 0.7, "agri", "low", "水产养殖|水产|渔业", "脆肉鲩|加州鲈鱼|罗氏沼虾|鱼苗",
           "水产养殖|水产苗种生产|水产品批发|水产品收购", "东升|民众"),
    _trade("A03", 0.4, "agri", "low", "畜牧|禽业|养殖", "生猪|肉鸡|乳鸽|禽蛋",
           "牲畜饲养|家禽饲养|动物饲养|畜牧专业及辅助性活动"),
    _trade("A05", 0.3, "agri", "low", "农业服务|农机服务|农业发展", "农机作业|植保服务|农业技术推广",
           "农业机械服务|农业专业及辅助性活动|农业生产托管服务"),
    # ---- 居民服务、房地产、文化、环境、能源
    _trade("O80", 1.2, "resident", "none", "家政服务|美容|生活服务|养老服务", "家政保洁|月嫂服务|美容美发|洗衣服务",
           "家政服务|美容服务|理发服务|洗染服务|养老服务"),
    _trade("O81", 0.6, "resident", "none", "汽车服务|维修|汽车维修", "汽车维修保养|家电维修|手机维修",
           "机动车修理和维护|家用电器修理|通讯设备修理"),
    _trade("K702", 0.8, "property", "none", "物业管理|物业服务|物业", "住宅物业|写字楼物业|工业园区物业",
           "物业管理|停车场服务|专业保洁、清洗、消毒服务"),
    _trade("K703", 0.6, "property", "none", "房地产代理|置业|房产", "二手房中介|新房代理|租赁代理",
           "房地产经纪|房地产咨询|住房租赁"),
    _trade("R88", 0.3, "culture", "none", "文化传播|文化发展|艺术", "演出策划|艺术培训|文创产品",
           "组织文化艺术交流活动|文艺创作|文化用品设备出租"),
    _trade("R89", 0.3, "culture", "none", "体育发展|体育文化|健身", "健身服务|体育赛事运营|体育培训",
           "体育竞赛组织|健身休闲活动|体育场地设施经营（不含高危险性体育运动）"),
    _trade("N77", 0.3, "environment", "mid", "环保科技|环境治理|生态科技", "污水治理|土壤修复|固废处理",
           "环境保护监测|水污染治理|土壤污染治理与修复服务|固体废物治理"),
    _trade("D44", 0.2, "utility", "mid", "新能源|能源科技|光伏科技", "分布式光伏发电|综合能源服务",
           "太阳能发电技术服务|发电业务、输电业务、供（配）电业务|合同能源管理"),
)
# fmt: on

# --------------------------------------------------------------------------- qualifications

# Canonical qualification keys and the names they go by; a passed name matches after dropping quotes.
QUALIFICATION_FORMS: dict[str, tuple[str, ...]] = {
    "hnte": ("高新技术企业", "国家高新技术企业"),
    "tech_sme": ("科技型中小企业",),
    "innovative_sme": ("创新型中小企业",),
    "srdi_sme": ("专精特新中小企业",),
    "little_giant": ("专精特新小巨人企业", "专精特新小巨人", "小巨人企业"),
    "champion": ("制造业单项冠军企业", "单项冠军企业"),
    "above_scale_industry": ("规模以上工业企业",),
    "above_quota_trade": ("限额以上商贸企业", "限额以上批零住餐企业"),
    "agri_leader": ("农业产业化龙头企业", "农业产业化重点龙头企业"),
    "national_tech_center": ("国家级企业技术中心",),
    "provincial_tech_center": ("省级企业技术中心",),
    "provincial_eng_center": ("省级工程技术研究中心",),
    "new_rd_institution": ("新型研发机构",),
    "incubator": ("科技企业孵化器",),
    "postdoc_station": ("博士后科研工作站",),
    "gazelle": ("瞪羚企业",),
    "ip_advantage": ("知识产权优势企业",),
    "foreign_trade_service": ("外贸综合服务企业",),
    "listed": ("上市公司",),
    "pre_ipo": ("拟上市企业",),
}

# Conditions the generator respects when granting (percent and 万元; demo heuristics, not law).
HNTE_MIN_RD_RATIO = 3.0  # 高新技术企业: R&D ≥ 3 % of revenue (the strictest tier is 3 % for > 2亿)
TECH_SME_MAX_EMPLOYEES = 500  # 科技型中小企业
TECH_SME_MAX_REVENUE = 20000
ABOVE_SCALE_MIN_REVENUE = 2000  # 规模以上工业企业: 主营业务收入 ≥ 2000 万元
ABOVE_QUOTA_MIN_REVENUE = {"F51": 2000, "F52": 500, "H": 200}  # 限额以上批发/零售/住宿餐饮
AGRI_LEADER_MIN_REVENUE = 2000
INDUSTRIAL_SECTIONS = frozenset("BCD")

# Qualifications granted once and expiring after this many years (certification date drawn in the past).
_VALID_YEARS = {
    "hnte": 3,
    "innovative_sme": 3,
    "srdi_sme": 3,
    "little_giant": 3,
    "champion": 3,
    "agri_leader": 2,
    "gazelle": 1,
    "ip_advantage": 3,
}

# --------------------------------------------------------------------------- names and contacts

# Characters Chinese firms favour in their trade names (字号).
_ZIHAO_CHARS = (
    "华鑫盛泰宏达利恒源兴丰誉明德嘉美创瑞佳信安永顺昌隆祥福金银海天宇星光辉耀新世纪通力合众和康健"
    "益博远博雅精诚正英杰俊豪卓越凯旋腾飞龙凤锦绣东南西北中联讯捷展鸿骏骐晨曦朗月晟昊昕旭阳春雨霖"
    "润泽沛湘粤港澳珠江岭南山川森林宝鼎尚品优选志成立业广汇臻致远航帆舟桥骏意诺欧亚美达圣奥特"
)
_ZIHAO_CHARS = "".join(dict.fromkeys(_ZIHAO_CHARS))  # de-duplicate, keep order
_CJK = re.compile(r"^[\u4e00-\u9fff]{2,3}$")
_FAKER_PREFIX_STOP = (
    "公司",
    "电子",
    "信息",
    "计算机",
    "软件",
    "科技",
    "数字",
    "国际",
    "开发区",
    "济南",
    "黄石",
    "时空",
)

_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "176",
    "177",
    "180",
    "181",
    "182",
    "183",
    "185",
    "186",
    "187",
    "188",
    "189",
    "191",
    "199",
)
_EMAIL_DOMAINS = ("qq.com", "qq.com", "qq.com", "163.com", "163.com", "126.com", "foxmail.com", "139.com", "sina.com")

# Profile fields a firm may leave empty, with relative frequency (R&D, assets and needs most often).
_DROPPABLE = (
    ("total_assets", 3.0),
    ("rd_expense", 3.0),
    ("needs", 3.0),
    ("tax_credit_level", 2.5),
    ("contact_phone", 1.0),
    ("business_scope", 1.0),
    ("employees", 1.0),
    ("credit_standing", 1.0),
    ("products", 1.0),
    ("annual_revenue", 0.8),
    ("established_on", 0.5),
    ("registered_capital", 0.5),
    ("contact_email", 0.5),
)
INCOMPLETE_SHARE = 0.23  # ~20 % of profiles end up with a gap (some draws hit protected fields)
# Fields that back a held qualification stay filled, so the data never contradicts its own grants.
_BACKING_FIELDS = frozenset({"annual_revenue", "rd_expense", "employees", "established_on"})

_NICE_CAPITAL = (
    1,
    3,
    5,
    10,
    20,
    30,
    50,
    100,
    200,
    300,
    500,
    800,
    1000,
    2000,
    3000,
    5000,
    8000,
    10000,
    20000,
    30000,
    50000,
    100000,
)
_LOG_NICE_CAPITAL = tuple(math.log(c) for c in _NICE_CAPITAL)

ENTERPRISE_FIELDS = (
    "credit_code",
    "name",
    "region_code",
    "industry_code",
    "established_on",
    "registered_capital",
    "employees",
    "annual_revenue",
    "total_assets",
    "rd_expense",
    "export_revenue",
    "credit_standing",
    "tax_credit_level",
    "business_scope",
    "products",
    "needs",
    "contact_name",
    "contact_phone",
    "contact_email",
    "size_class",
    "rd_ratio",
    "completeness",
    "missing_fields",
)


def _name_key(name: str) -> str:
    """Fold a qualification name for matching: NFKC, no quotes or spaces."""
    text = unicodedata.normalize("NFKC", name)
    return re.sub(r"[\s\"'“”‘’「」『』《》]", "", text)


def resolve_qualification_names(names: Iterable[str]) -> dict[str, str]:
    """Map each known qualification key to the caller's spelling of it, for the names it recognises."""
    by_key = {_name_key(form): key for key, forms in QUALIFICATION_FORMS.items() for form in forms}
    out: dict[str, str] = {}
    for name in names:
        key = by_key.get(_name_key(name))
        if key is not None and key not in out:
            out[key] = name
    return out


def _cumulative(weights: Iterable[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _money(value: float) -> float:
    return round(value, 2)


def _add_years(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


class _Generator:
    """Holds the stream's random state, word pools and the names and codes already issued."""

    def __init__(self, *, seed: int, qualification_names: list[str], today: dt.date) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.quals = resolve_qualification_names(qualification_names)
        self.key_of = {name: key for key, name in self.quals.items()}
        self.seen_names: set[str] = set()
        self.seen_codes: set[str] = set()

        self._check_tables()
        self.region_codes = [code for code, _ in REGION_WEIGHTS]
        self.region_cum = _cumulative(w for _, w in REGION_WEIGHTS)
        self.trade_cum = _cumulative(t.weight for t in TRADES)
        self.drop_cum = _cumulative(w for _, w in _DROPPABLE)
        self.region_prefixes = {code: self._prefixes(code) for code in self.region_codes}
        self._build_pools(seed)

    # ---- set-up

    @staticmethod
    def _check_tables() -> None:
        # Every code drawn must exist in the code tables, so a table edit fails here, not in matching.
        known = {row["code"] for row in codes.list_industries()}
        missing = [t.code for t in TRADES if t.code not in known]
        if missing:
            raise RuntimeError(f"industry codes missing from the industries table: {missing}")
        unknown = [code for code, _ in REGION_WEIGHTS if codes.region_name(code) is None]
        if unknown:
            raise RuntimeError(f"region codes missing from the regions table: {unknown}")

    @staticmethod
    def _prefixes(code: str) -> tuple[str, str]:
        """Return (usual name prefix, prefix with the district) for a region."""
        city = codes.region_name(code[:4] + "00") or ""
        own = codes.region_name(code) or ""
        return city, (city + own if own != city else city)

    def _build_pools(self, seed: int) -> None:
        """Draw the name, contact and e-mail pools once; rows then combine them cheaply."""
        fake = Faker("zh_CN")
        fake.seed_instance(seed)
        pool_rng = random.Random(f"pools-{seed}")
        prefixes = {p for p in (fake.company_prefix() for _ in range(400)) if _CJK.match(p)}
        prefixes = {p for p in prefixes if not any(stop in p for stop in _FAKER_PREFIX_STOP)}
        # Faker's zh_CN prefixes are few, so most 字号 are two-character combinations such as 鑫达, 华泰.
        combos = {"".join(pool_rng.sample(_ZIHAO_CHARS, 2)) for _ in range(6000)}
        self.zihao2 = sorted(prefixes | combos)
        self.people = [fake.name() for _ in range(3000)]
        self.usernames = sorted({fake.user_name() for _ in range(1500)})

    # ---- one firm

    def row(self) -> dict[str, Any]:
        rng = self.rng
        trade = TRADES[bisect.bisect_right(self.trade_cum, rng.random() * self.trade_cum[-1])]
        eco = ECONOMICS[trade.economics]
        region = self.region_codes[bisect.bisect_right(self.region_cum, rng.random() * self.region_cum[-1])]
        section = trade.code[0]

        # Age in years, skewed recent: median ≈ 8, one firm in six under a year old, at most 30.
        age = max(0.02, 30.0 * rng.random() ** 1.9)
        established_on = self.today - dt.timedelta(days=int(age * 365.2425))

        # Headcount: log-normal around the trade's median; young firms are smaller, old ones a little larger.
        shift = min(0.6, max(-1.2, 0.4 * math.log(age / 6.0)))
        employees = max(1, int(round(rng.lognormvariate(math.log(eco.employees_median) + shift, EMPLOYEES_SIGMA))))

        revenue = employees * eco.revenue_per_head * rng.lognormvariate(0.0, 0.55)
        if age < 1.0:
            revenue *= max(0.05, age)
            if rng.random() < 0.25:
                revenue = 0.0  # not yet trading
        revenue = _money(revenue)
        assets = _money(max(revenue, employees * 2.0) * eco.assets_to_revenue * rng.lognormvariate(0.0, 0.5))
        capital = self._registered_capital(assets)

        rd_share, rd_median = RD_PROFILE[trade.tech]
        rd_expense = 0.0
        if revenue > 0 and rng.random() < rd_share:
            ratio = min(RD_RATIO_CAP, max(0.1, rd_median * rng.lognormvariate(0.0, 0.6)))
            rd_expense = math.floor(revenue * ratio) / 100  # round down to cents: never above the cap
        true_ratio = derived.rd_ratio(rd_expense, revenue)

        export: float | None = None
        if section == "C" or trade.code.startswith("F51"):
            export = 0.0
            if revenue > 0 and rng.random() < (0.15 if section == "C" else 0.08):
                export = _money(revenue * rng.uniform(0.1, 0.9))

        credit, tax = self._credit(age)
        true_size = size_class(
            industry_code=trade.code, employees=employees, annual_revenue=revenue, total_assets=assets
        )
        firm = SimpleNamespace(
            trade=trade,
            section=section,
            age=age,
            established_on=established_on,
            employees=employees,
            revenue=revenue,
            assets=assets,
            rd_ratio=true_ratio,
            export=export,
            size=true_size,
            credit=credit,
        )
        qualifications = self._qualifications(firm)

        row: dict[str, Any] = {
            "credit_code": self._credit_code(region),
            "name": self._name(trade, region, employees, true_size),
            "region_code": region,
            "industry_code": trade.code,
            "established_on": established_on,
            "registered_capital": capital,
            "employees": employees,
            "annual_revenue": revenue,
            "total_assets": assets,
            "rd_expense": rd_expense,
            "export_revenue": export,
            "credit_standing": credit,
            "tax_credit_level": tax,
            "business_scope": self._scope(trade, export, true_ratio),
            "products": "、".join(rng.sample(trade.products, min(len(trade.products), rng.randint(2, 4)))),
            "needs": self._needs(trade, firm, qualifications),
            "contact_name": self.people[rng.randrange(len(self.people))],
            "contact_phone": self._phone(region),
            "contact_email": self._email() if rng.random() < 0.6 else None,
        }
        if rng.random() < INCOMPLETE_SHARE:
            self._drop_fields(row, keep=_BACKING_FIELDS if qualifications else frozenset())

        # Derived columns come from profiles.derived, exactly as the service computes them on save.
        # A plain namespace stands in for the Enterprise: derived reads and sets plain attributes only.
        shadow: Any = SimpleNamespace(**row)
        if derived.missing_fields(shadow):
            derived.refresh(shadow)
        else:
            # A complete profile's size and ratio are the ones already computed from the same values;
            # skipping the second size_class call makes generation about a fifth faster.
            shadow.size_class, shadow.rd_ratio, shadow.completeness, shadow.missing_fields = (
                true_size,
                true_ratio,
                100,
                [],
            )
        for key in ("size_class", "rd_ratio", "completeness", "missing_fields"):
            row[key] = getattr(shadow, key)
        row["qualifications"] = qualifications
        return row

    def _registered_capital(self, assets: float) -> float:
        """Pick a round registered capital (注册资本) loosely tied to the balance sheet."""
        target = max(1.0, assets) * self.rng.lognormvariate(-0.6, 0.8)
        i = bisect.bisect_left(_LOG_NICE_CAPITAL, math.log(target))
        i = min(i, len(_NICE_CAPITAL) - 1)
        if i > 0 and abs(_LOG_NICE_CAPITAL[i - 1] - math.log(target)) < abs(_LOG_NICE_CAPITAL[i] - math.log(target)):
            i -= 1
        return float(_NICE_CAPITAL[max(i, 1)])

    def _credit(self, age: float) -> tuple[str, str]:
        rng = self.rng
        r = rng.random()
        credit = "good" if r < 0.93 else ("normal" if r < 0.99 else "dishonest")
        if credit == "dishonest":
            return credit, "D" if rng.random() < 0.6 else "C"
        if age < 1.0 or (age < 3.0 and rng.random() < 0.15):
            return credit, "M"  # new taxpayers (and firms with little revenue history) are rated M
        r = rng.random()
        if credit == "normal":
            return credit, "B" if r < 0.65 else "C"
        return credit, "A" if r < 0.4 else ("B" if r < 0.96 else "C")

    def _credit_code(self, region: str) -> str:
        while True:
            code = uscc.make_credit_code(self.rng, region)
            if code not in self.seen_codes:
                self.seen_codes.add(code)
                return code

    def _name(self, trade: Trade, region: str, employees: int, size: str | None) -> str:
        rng = self.rng
        city, district = self.region_prefixes[region]
        if employees >= 300 and rng.random() < 0.4:
            prefix = "广东"
        elif region in _DISTRICT_IN_NAME and rng.random() < _DISTRICT_IN_NAME[region]:
            prefix = district
        elif region == "442000" and trade.towns and rng.random() < 0.2:
            prefix = city + rng.choice(trade.towns)
        else:
            prefix = city
        if size == "large" and rng.random() < 0.4:
            suffix = rng.choice(("股份有限公司", "集团有限公司", "股份有限公司"))
        elif size == "medium" and rng.random() < 0.1:
            suffix = "股份有限公司"
        else:
            suffix = "有限公司"
        attempt = 0
        while True:
            if attempt < 4:
                zihao = self.zihao2[rng.randrange(len(self.zihao2))]
            else:  # a crowded name space: three-character trade names are far rarer
                zihao = "".join(rng.sample(_ZIHAO_CHARS, 3))
            name = f"{prefix}{zihao}{rng.choice(trade.words)}{suffix}"
            if name not in self.seen_names:
                self.seen_names.add(name)
                return name
            attempt += 1

    def _scope(self, trade: Trade, export: float | None, rd_ratio: float | None) -> str:
        rng = self.rng
        items = rng.sample(trade.scope, min(len(trade.scope), rng.randint(3, 5)))
        if trade.tech in ("high", "mid") and (rd_ratio or 0) > 0:
            items.append(_TECH_SCOPE)
        if export:
            items.append(_TRADE_SCOPE)
        return "一般项目：" + "；".join(items) + "。" + _SCOPE_TAIL

    def _needs(self, trade: Trade, firm: SimpleNamespace, quals: list[tuple[str, dt.date | None]]) -> str:
        rng = self.rng
        group = _NEEDS_GROUP[trade.economics]
        bank = list(NEEDS[group]) + list(NEEDS["common"])
        if trade.tech == "high" and group != "tech":
            bank += NEEDS["tech"]
        if firm.export:
            bank += NEEDS["export"] * 2
        if firm.age < 2:
            bank += NEEDS["startup"] * 2
        picked = rng.sample(bank, rng.randint(1, 3))
        held = {self.key_of[name]: until for name, until in quals}
        if "hnte" in held and held["hnte"] and held["hnte"] < _add_years(self.today, 1):
            picked.insert(0, "高新技术企业证书即将到期，想了解重新认定要求")
        if "srdi_sme" in held and "little_giant" not in held and rng.random() < 0.5:
            picked.append("想申报专精特新“小巨人”企业，需要辅导")
        if firm.section in INDUSTRIAL_SECTIONS and 1500 <= firm.revenue < ABOVE_SCALE_MIN_REVENUE:
            picked.append("产值接近规上标准，想了解小升规奖励")
        return "；".join(dict.fromkeys(picked))

    def _phone(self, region: str) -> str:
        rng = self.rng
        if rng.random() < 0.7:
            return rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        return f"{_AREA_CODES[region[:4]]}-{rng.choice('823')}{rng.randrange(10**7):07d}"

    def _email(self) -> str:
        rng = self.rng
        domain = rng.choice(_EMAIL_DOMAINS)
        if domain == "qq.com" and rng.random() < 0.7:
            return f"{rng.randrange(10**7, 10**10)}@qq.com"
        return f"{self.usernames[rng.randrange(len(self.usernames))]}{rng.randrange(100)}@{domain}"

    def _drop_fields(self, row: dict[str, Any], keep: frozenset[str]) -> None:
        rng = self.rng
        how_many = rng.choices((1, 2, 3), weights=(0.55, 0.3, 0.15))[0]
        for _ in range(how_many):
            field = _DROPPABLE[bisect.bisect_right(self.drop_cum, rng.random() * self.drop_cum[-1])][0]
            if field not in keep:
                row[field] = None

    # ---- qualifications

    def _certified(self, firm: SimpleNamespace, key: str, window_years: float = 4.0) -> dt.date:
        """Return an expiry date: certified some time in the last window_years, after the firm's first year."""
        earliest = max(
            firm.established_on + dt.timedelta(days=366), self.today - dt.timedelta(days=int(window_years * 365))
        )
        span = max(0, (self.today - earliest).days)
        certified_on = earliest + dt.timedelta(days=self.rng.randint(0, span))
        return _add_years(certified_on, _VALID_YEARS[key]) - dt.timedelta(days=1)

    def _qualifications(self, firm: SimpleNamespace) -> list[tuple[str, dt.date | None]]:
        """Grant qualifications only to firms that plausibly meet their conditions."""
        rng, t = self.rng, firm.trade
        rd = firm.rd_ratio or 0.0
        industrial = firm.section in INDUSTRIAL_SECTIONS
        sme = firm.size in ("medium", "small", "micro")
        held: dict[str, dt.date | None] = {}

        def grant(key: str, p: float, until: dt.date | None | Literal["cert"] = "cert") -> None:
            if key in held or rng.random() >= p:
                return
            held[key] = self._certified(firm, key) if isinstance(until, str) else until

        if firm.revenue > 0 and firm.age >= 1:
            if rd >= HNTE_MIN_RD_RATIO:
                grant("hnte", {"high": 0.5, "mid": 0.3, "low": 0.05}.get(t.tech, 0.0))
            tech_sme_rd = 5.0 if firm.revenue <= 5000 else 4.0
            if (
                t.tech in ("high", "mid")
                and rd >= tech_sme_rd
                and firm.employees <= TECH_SME_MAX_EMPLOYEES
                and firm.revenue <= TECH_SME_MAX_REVENUE
            ):
                # 科技型中小企业 are registered yearly and valid to the end of that year.
                year = self.today.year if rng.random() < 0.7 else self.today.year - 1
                grant("tech_sme", 0.55 if t.tech == "high" else 0.3, dt.date(year, 12, 31))
            if sme and rd >= 3.0 and firm.size != "micro":
                grant("innovative_sme", 0.3 if "hnte" in held else 0.12)
            if (
                firm.section == "C"
                and firm.size in ("medium", "small")
                and firm.revenue >= 1000
                and firm.age >= 2
                and rd >= 3.0
            ):
                grant("srdi_sme", 0.25)
                if "srdi_sme" in held and firm.revenue >= 10000 and firm.age >= 3:
                    grant("little_giant", 0.15)
            if industrial and firm.revenue >= ABOVE_SCALE_MIN_REVENUE:
                grant("above_scale_industry", 0.92, None)
            quota = ABOVE_QUOTA_MIN_REVENUE.get(t.code[:3], ABOVE_QUOTA_MIN_REVENUE.get(firm.section))
            if firm.section in "FH" and quota is not None and firm.revenue >= quota:
                grant("above_quota_trade", 0.85, None)
            if (firm.section == "A" or t.code in ("C13", "C14")) and firm.revenue >= AGRI_LEADER_MIN_REVENUE:
                grant("agri_leader", 0.35)
            if firm.section == "C" and rd >= 3.0:
                if firm.size == "large":
                    grant("national_tech_center", 0.1, None)
                if firm.size in ("large", "medium"):
                    grant("provincial_tech_center", 0.2, None)
            if firm.section == "C" and firm.size == "large" and firm.age >= 10 and firm.export:
                grant("champion", 0.1)
            if "hnte" in held:
                grant("provincial_eng_center", 0.06, None)
                grant("ip_advantage", 0.08)
                if firm.employees >= 300:
                    grant("postdoc_station", 0.15, None)
                if firm.age <= 10 and firm.revenue >= 1000:
                    grant("gazelle", 0.15)
            if t.code.startswith("M73"):
                grant("new_rd_institution", 0.04, None)
            if t.code == "M754":
                grant("incubator", 0.3, None)
            if t.code.startswith("F51") and firm.export and firm.revenue >= 5000:
                grant("foreign_trade_service", 0.1, None)
            if firm.size == "large" and firm.credit != "dishonest":
                grant("listed", 0.12, None)
            elif firm.size == "medium" and "hnte" in held:
                grant("listed", 0.02, None)
            if "listed" not in held and firm.revenue >= 10000 and firm.age >= 3 and firm.credit == "good":
                grant("pre_ipo", 0.08, None)
        return [(self.quals[key], until) for key, until in held.items() if key in self.quals]


def generate_enterprises(
    *,
    seed: int,
    count: int,
    qualification_names: list[str],
    today: dt.date,
    start_index: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield count synthetic enterprises as plain dicts of Enterprise column values plus qualifications.

    Rows start_index … start_index + count - 1 of the seed's stream are yielded, so consecutive
    slices of one seed join into one run whose names and credit codes are all unique. Only names in
    qualification_names are granted (matched ignoring quote style); others are never invented.
    """
    if count < 0 or start_index < 0:
        raise ValueError("count and start_index must not be negative")
    gen = _Generator(seed=seed, qualification_names=qualification_names, today=today)
    for _ in range(start_index):
        gen.row()  # advance the stream so names and codes stay unique across slices
    for _ in range(count):
        yield gen.row()


def reissue_taken_codes(rows: Iterable[dict[str, Any]], *, taken: set[str], seed: int) -> Iterator[dict[str, Any]]:
    """Give rows whose credit code is already in taken (e.g. in the database) a fresh one, deterministically.

    taken is updated with every replacement; generated codes never repeat within a run, so only codes
    already stored elsewhere can clash.
    """
    rng = random.Random(f"reissue-{seed}")
    for row in rows:
        if row["credit_code"] in taken:
            code = row["credit_code"]
            while code in taken:
                code = uscc.make_credit_code(rng, row["region_code"])
            taken.add(code)
            row = {**row, "credit_code": code}
        yield row
