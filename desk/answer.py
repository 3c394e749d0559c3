"""Instant answers (即接即答复) from the knowledge base: published policies and active FAQ entries.

Retrieval is hybrid on both kinds of source:

- policies come from the matcher's search (`matcher.search.search`: the policy index of title,
  summary, categories, tags and the conditions in words, fused with keyword hits); each hit's
  semantic score is its cosine similarity to the question;
- every published policy's full text is split into passages (`split_passages`: by 条 / 款 /
  numbered item / paragraph, at most `PASSAGE_CHARS`), each embedded with the policy's title in
  front through the embedding cache; a policy's cosine is the better of its search score and its
  best passage's, and the policies whose passages rank highest join the search hits, so a question
  about a clause deep in a text finds it. The answer quotes the sentences of that passage (and of
  the policy's passage sharing the most words with the question, when that is another) that
  share the most with the question (``原文：…``), then the summary, conditions, 申报时间,
  department and contact;
- FAQ entries are embedded with the same embedder (question and answer as a ``passage``, the
  question alone as a ``query``, both through the embedding cache). An entry may be the answer only
  when its own question matches the asker's (question–question cosine ≥ `FAQ_QUESTION_THRESHOLD`);
  otherwise it can only back a policy answer as a supporting citation;
- a question that names a region (`place_mentions`: the code table's regions, provinces and large
  cities, and every place a policy title opens with) never gets a policy of another region
  (`place_fits`): a policy's region is its region codes and the place its title names as its own
  (`title_places`: 成都市…, 新乡高新区…, …（广州、深圳）), so a city outside the code table counts too;
  nationwide policies fit everywhere. FAQ entries take the places of the policies they name. When a
  policy the rule took out fits the question better than every candidate left, it counts as the
  runner-up: the question is about that other place, and the answer is unsure.

Each candidate's score adds a keyword term: the IDF-weighted share of the question's character
bigrams found in the candidate's key text (policy title, tags and their synonyms; FAQ question and
curated keywords)::

    score = cosine + KEYWORD_WEIGHT × keyword coverage

The best-scored candidate is the answer (`rank`, which the evaluation re-runs for several FAQ
question thresholds without retrieving again). How sure we are depends on how high it scores and how far
it stands above the best *competing* candidate — an FAQ entry and a policy it curates as related
say the same thing, so the runner-up is the best candidate not linked to the winner::

    raw = top score + MARGIN_WEIGHT × (top score − runner-up score) [− PERSONAL_PENALTY]
    confidence = 1 / (1 + exp(−(slope × raw + intercept)))

slope and intercept are fitted (logistic regression of "top citation is right" on raw) by the
calibration `huiqi eval desk`, which also picks the threshold: of the confidences at which precision
of the answered questions reaches the target (0.9), the one answering the most questions right (of
equal ones the highest). They are stored in ``<models_dir>/desk_answer/manifest.json``, which may
also carry ``faq_threshold`` (`huiqi eval answers` cross-validates it on its tune rows); without that
file, the defaults below (fitted on half of the demo's labelled questions with scoring version 2,
measured on the other half) and the ``desk_answer_threshold`` setting apply. Version 3 (title places,
the left-out runner-up) changes raw only for questions naming a place; the defaults were not refitted.

On the held-out real set (tests/data/answers_*, 45 public policy texts, tuned on 109 questions and
measured on 107 others through `answer_question`): precision 0.989, coverage 0.989, no unanswerable
question answered, against char TF-IDF passage retrieval's 0.922 / 0.798 (see tests/data/README.md).

With passages, FAQ question matching and the region rule (scoring version 2), on the demo
knowledge base and all 128 labelled questions: top-1 0.892, in-sample precision 0.907 at coverage
0.863; calibrated on one half and measured on the other over 10 splits, precision 0.888
(0.849–0.935) at coverage 0.855 (0.824–0.873).

The weights were chosen on the labelled set (tests/data/desk_eval.json, 128 questions): keyword
coverage lifted top-1 accuracy on answerable questions from 0.873 to 0.892, the linked margin lifted
coverage at precision 0.9 from 0.66 (top score alone) to 0.83; adding policy interpretations as
extra passages changed neither and was left out. Questions about the asker's own application
("审到哪一步了", "申请编号…给了多少分") or asking staff to act ("帮忙催一下") lose PERSONAL_PENALTY
from the raw score: the knowledge base may hold a passage on the topic, but only a person can answer.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import re
import threading
import weakref
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from catalog import rules as rules_mod
from catalog.models import Policy, PolicyRegion, PolicyStatus, PolicyType, Tag, policy_tag
from core import codes
from core.config import Settings
from core.text import normalize
from desk.models import FaqEntry
from matcher import engine as matcher_engine
from matcher import search as matcher_search
from matcher import tags as tags_mod
from matcher.embeddings import DEFAULT_MAX_CHARS, clip_text

log = logging.getLogger(__name__)

Source = Literal["policy", "faq"]

SUBDIR = "desk_answer"
MANIFEST_FILE = "manifest.json"
# Bumped whenever the scoring below changes; a manifest calibrated for another version is ignored.
SCORING_VERSION = 3

KEYWORD_WEIGHT = 0.05
MARGIN_WEIGHT = 2.0
PERSONAL_PENALTY = 0.05  # subtracted from the raw score of a question only a person can answer
POLICY_CANDIDATES = 10  # search hits considered
# An FAQ entry may be the answer only when its own question matches the asker's (cosine of the two
# questions, both embedded as queries); otherwise it can only back a policy answer as a citation.
# Chosen on tests/data/desk_eval.json: at 0.91 the entry labelled right is kept for 64 of the 66
# questions an FAQ answers, while entries that are the closest FAQ to a question they do not
# answer drop from 62 to 22.
FAQ_QUESTION_THRESHOLD = 0.91
MAX_CITATIONS = 3
QUOTE_LEXICAL = True  # also quote the policy's passage sharing the most words with the question
# Logistic (Platt) calibration of raw → confidence shipped for the demo: `huiqi eval desk --fit-half`
# on the demo knowledge base, fitted on the tuning half of tests/data/desk_eval.json (seed 0) only,
# with the threshold `desk_answer_threshold` (0.6253) chosen there; on the other half (64 questions
# never used to fit it) precision 0.977, coverage 0.843, no unanswerable question answered.
DEFAULT_SLOPE = 45.201
DEFAULT_INTERCEPT = -41.875

POLICY_URL = "/api/v1/policies/{id}"
FAQ_URL = "/api/v1/desk/faq/{id}"

_NON_WORD = re.compile(r"[\W_]+")
# Questions about the asker's own application (its progress, its score, its number) or asking staff
# to act: the knowledge base may hold a passage on the same topic, but only a person can answer.
PERSONAL = re.compile(
    r"(审|批|办|进行)到哪|进度|到哪一步|哪个环节|为什么没(通过|批|评上|到账)|扣分|"
    r"(申请|受理|合同|项目)(编号|号)|编号[:：]?[A-Za-z0-9-]{4,}|帮(我们|忙)|催一下|能不能告诉我们"
)
_SENTENCE = re.compile(r"(?<=[。；！？!?;])")
_FULL_SENTENCE = re.compile(r"(?<=[。！？!?])")  # a clause's list items (split by ；) stay together


# ---------------------------------------------------------------- results


@dataclass
class Citation:
    """A source an answer quotes: a published policy or an FAQ entry, with a link and the passage used."""

    source: Source
    id: int
    code: str | None
    title: str
    url: str
    passage: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """Return the citation as a JSON-safe dict."""
        return asdict(self)


@dataclass
class InstantAnswer:
    """What the knowledge base says about a question, and whether it is sure enough to answer alone."""

    confident: bool
    confidence: float
    threshold: float
    text: str
    citations: list[Citation] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the answer as a JSON-safe dict (stored on the case, sent to the firm)."""
        return {
            "confident": bool(self.confident),
            "confidence": float(self.confidence),
            "threshold": float(self.threshold),
            "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
        }


# ---------------------------------------------------------------- keyword overlap


def char_bigrams(text: str | None) -> frozenset[str]:
    """Return the character bigrams of normalised, lower-cased text, not crossing punctuation or spaces."""
    out: set[str] = set()
    for segment in _NON_WORD.split(normalize(text).lower()):
        out.update(segment[i : i + 2] for i in range(len(segment) - 1))
    return frozenset(out)


def coverage(query: frozenset[str], doc: frozenset[str], idf: dict[str, float], unseen_idf: float) -> float:
    """Return the IDF-weighted share of the query's bigrams that occur in the document (0–1)."""
    if not query:
        return 0.0
    total = hit = 0.0
    for gram in query:
        weight = idf.get(gram, unseen_idf)
        total += weight
        if gram in doc:
            hit += weight
    return hit / total if total else 0.0


def _idf(docs: Iterable[frozenset[str]]) -> tuple[dict[str, float], float]:
    """Return smoothed IDF of every bigram over the documents, and the IDF of an unseen bigram."""
    docs = list(docs)
    counts = Counter(g for d in docs for g in d)
    n = len(docs)
    return {g: math.log((n + 1) / (c + 0.5)) for g, c in counts.items()}, math.log((n + 1) / 0.5)


PASSAGE_CHARS = 300  # a passage is a clause or paragraph, merged with its neighbours up to this length
_CLAUSE_START = re.compile(
    r"^(第[一二三四五六七八九十百零〇\d]+[条章节款]|[一二三四五六七八九十]+、|[（(][一二三四五六七八九十\d]+[)）]|\d+[.、．])"
)


def split_passages(text: str | None, limit: int = PASSAGE_CHARS) -> list[str]:
    """Split a policy's full text into passages: by 条 / 款 / numbered item / paragraph, at most `limit` chars.

    A clause longer than the limit is cut at sentence ends; short consecutive paragraphs of one clause
    are merged. Passages are embedded with the policy's title in front (see `_snapshot`).
    """
    lines = [" ".join(line.split()) for line in (text or "").replace("\r", "\n").split("\n")]
    blocks: list[str] = []
    for line in lines:
        if not line:
            continue
        if blocks and not _CLAUSE_START.match(line) and len(blocks[-1]) + len(line) <= limit:
            blocks[-1] += line
        else:
            blocks.append(line)
    out: list[str] = []
    for block in blocks:
        if len(block) <= limit:
            out.append(block)
            continue
        current = ""
        for sentence in _sentences(block):
            if current and len(current) + len(sentence) > limit:
                out.append(current)
                current = ""
            current += sentence if len(sentence) <= limit else clip_text(sentence, limit)
        if current:
            out.append(current)
    return out


def faq_passage(entry: Any) -> str:
    """Return the text an FAQ entry is embedded as: its question, then its answer."""
    return clip_text(f"{normalize(entry.question)}\n{normalize(entry.answer)}", DEFAULT_MAX_CHARS)


def faq_key_text(entry: Any) -> str:
    """Return the text of an FAQ entry its keyword overlap is measured on: question and keywords."""
    return " ".join([entry.question or "", *(entry.keywords or [])])


def policy_key_text(title: str, tags: Iterable[tuple[str, Sequence[str]]]) -> str:
    """Return the text of a policy its keyword overlap is measured on: title, tag names and synonyms."""
    parts = [title or ""]
    for name, synonyms in tags:
        parts.append(name)
        parts.extend(synonyms or ())
    return " ".join(parts)


# ---------------------------------------------------------------- the knowledge-base snapshot


@dataclass
class _Snapshot:
    """What answering needs beyond the policy index, rebuilt when FAQ entries or policies change."""

    signature: tuple[Any, ...]
    faq_ids: list[int]
    faq_vectors: np.ndarray
    faq_question_vectors: np.ndarray  # the question alone, embedded as a query
    faq_grams: list[frozenset[str]]
    faq_related: list[frozenset[str]]  # normalised titles of the policies an entry names as related
    faq_places: list[frozenset[str]]  # the places of those policies, and places its question names
    policy_grams: dict[int, frozenset[str]]
    policy_titles: dict[int, str]  # normalised
    policy_regions: dict[int, list[str]]
    policy_places: dict[int, frozenset[str]]  # places a policy's title names as its own (`title_places`)
    place_names: tuple[str, ...]  # every such place: a question naming one names a region
    passage_policy: np.ndarray  # policy id of every passage
    passage_texts: list[str]
    passage_vectors: np.ndarray
    idf: dict[str, float]
    unseen_idf: float


_SNAPSHOTS: weakref.WeakKeyDictionary[Any, _Snapshot] = weakref.WeakKeyDictionary()
_SNAPSHOT_LOCK = threading.Lock()


def _signature(db: Session) -> tuple[Any, ...]:
    """Return what changes whenever the knowledge base does: the database, counts, id range and latest edit."""

    def stats(model: Any, where: Any) -> tuple[Any, ...]:
        return tuple(
            db.execute(
                select(
                    func.count(), func.min(model.id), func.max(model.id), func.sum(model.id), func.max(model.updated_at)
                ).where(where)
            ).one()
        )

    return (
        db.get_bind().engine.url.render_as_string(hide_password=True),
        stats(FaqEntry, FaqEntry.active.is_(True)),
        stats(Policy, Policy.status == PolicyStatus.published),
    )


def _snapshot(db: Session, matcher: matcher_engine.Matcher) -> _Snapshot:
    """Return the FAQ vectors and keyword statistics of the knowledge base, rebuilt only when it changed."""
    signature = _signature(db)
    held = _SNAPSHOTS.get(matcher)
    if held is not None and held.signature == signature:
        return held
    with _SNAPSHOT_LOCK:
        held = _SNAPSHOTS.get(matcher)
        if held is not None and held.signature == signature:
            return held
        faqs = list(db.scalars(select(FaqEntry).where(FaqEntry.active.is_(True)).order_by(FaqEntry.id)))
        vectors = matcher.encode([faq_passage(f) for f in faqs], "passage")
        question_vectors = matcher.encode([normalize(f.question) for f in faqs], "query")
        titles = dict(
            db.execute(select(Policy.id, Policy.title).where(Policy.status == PolicyStatus.published)).tuples().all()
        )
        tags: dict[int, list[tuple[str, Sequence[str]]]] = {pid: [] for pid in titles}
        rows = db.execute(
            select(policy_tag.c.policy_id, Tag.name, Tag.synonyms)
            .join(Tag, Tag.id == policy_tag.c.tag_id)
            .join(Policy, Policy.id == policy_tag.c.policy_id)
            .where(Policy.status == PolicyStatus.published)
        )
        for pid, name, synonyms in rows:
            tags.setdefault(pid, []).append((name, synonyms or []))
        policy_grams = {pid: char_bigrams(policy_key_text(title, tags.get(pid, []))) for pid, title in titles.items()}
        faq_grams = [char_bigrams(faq_key_text(f)) for f in faqs]
        idf, unseen = _idf([*policy_grams.values(), *faq_grams])
        regions: dict[int, list[str]] = {pid: [] for pid in titles}
        for pid, code in db.execute(
            select(PolicyRegion.policy_id, PolicyRegion.region_code)
            .join(Policy, Policy.id == PolicyRegion.policy_id)
            .where(Policy.status == PolicyStatus.published)
        ):
            regions.setdefault(pid, []).append(code)
        places = {pid: title_places(title) for pid, title in titles.items()}
        all_places = sorted({n for names in places.values() for n in names})
        faq_related = [frozenset(normalize(t) for t in (f.related_policies or [])) for f in faqs]
        passage_policy: list[int] = []
        passage_texts: list[str] = []
        embedded: list[str] = []
        for pid, title, full_text in db.execute(
            select(Policy.id, Policy.title, Policy.full_text)
            .where(Policy.status == PolicyStatus.published)
            .order_by(Policy.id)
        ):
            for piece in split_passages(full_text):
                passage_policy.append(pid)
                passage_texts.append(piece)
                embedded.append(clip_text(f"{normalize(title)}：{piece}", DEFAULT_MAX_CHARS))
        passage_vectors = (
            np.asarray(matcher.encode(embedded, "passage"), dtype=np.float32)
            if embedded
            else np.zeros((0, 0), dtype=np.float32)
        )
        snap = _Snapshot(
            signature=signature,
            faq_ids=[f.id for f in faqs],
            faq_vectors=np.asarray(vectors, dtype=np.float32) if faqs else np.zeros((0, 0), dtype=np.float32),
            faq_question_vectors=np.asarray(question_vectors, dtype=np.float32)
            if faqs
            else np.zeros((0, 0), dtype=np.float32),
            faq_grams=faq_grams,
            faq_related=faq_related,
            faq_places=[
                frozenset(
                    {n for pid, t in titles.items() if normalize(t) in related for n in places[pid]}
                    | {n for n, _ in place_mentions(f.question, all_places)}
                )
                for f, related in zip(faqs, faq_related, strict=True)
            ],
            policy_grams=policy_grams,
            policy_titles={pid: normalize(t) for pid, t in titles.items()},
            policy_regions=regions,
            policy_places=places,
            place_names=tuple(all_places),
            passage_policy=np.asarray(passage_policy, dtype=np.int64),
            passage_texts=passage_texts,
            passage_vectors=passage_vectors,
            idf=idf,
            unseen_idf=unseen,
        )
        _SNAPSHOTS[matcher] = snap
        return snap


# ---------------------------------------------------------------- calibration (threshold and slope)


@dataclass(frozen=True)
class Calibration:
    """How raw scores become confidences, and the confidence from which an answer is given."""

    threshold: float
    slope: float = DEFAULT_SLOPE
    intercept: float = DEFAULT_INTERCEPT
    source: str = "settings"  # "manifest" when read from models_dir
    faq_threshold: float | None = None  # question–question cosine from which an FAQ may answer (None: default)

    def confidence(self, raw: float) -> float:
        """Return the calibrated confidence (0–1) of a raw score."""
        z = self.slope * raw + self.intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))


_MANIFEST_CACHE: dict[Path, tuple[int, dict[str, Any] | None]] = {}


def manifest_path(models_dir: Path | str) -> Path:
    """Return where the calibration's manifest lives."""
    return Path(models_dir) / SUBDIR / MANIFEST_FILE


def read_manifest(models_dir: Path | str) -> dict[str, Any] | None:
    """Return the calibration manifest, or None when absent, unreadable or made for another scoring."""
    path = manifest_path(models_dir)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _MANIFEST_CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    manifest: dict[str, Any] | None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("scoring_version") != SCORING_VERSION:
            log.warning(
                "desk answer manifest %s is for scoring version %s; ignored", path, manifest.get("scoring_version")
            )
            manifest = None
        else:
            float(manifest["threshold"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("desk answer manifest %s unreadable (%s); using the settings", path, exc)
        manifest = None
    _MANIFEST_CACHE[path] = (mtime, manifest)
    return manifest


def load_calibration(settings: Settings) -> Calibration:
    """Return the stored calibration, or the defaults with the configured threshold."""
    manifest = read_manifest(settings.models_dir)
    if manifest is None:
        return Calibration(threshold=float(settings.desk_answer_threshold))
    return Calibration(
        threshold=float(manifest["threshold"]),
        slope=float(manifest.get("slope", DEFAULT_SLOPE)),
        intercept=float(manifest.get("intercept", DEFAULT_INTERCEPT)),
        source="manifest",
        faq_threshold=float(manifest["faq_threshold"]) if manifest.get("faq_threshold") is not None else None,
    )


# ---------------------------------------------------------------- retrieval


@dataclass
class Candidate:
    """One source scored for a question."""

    source: Source
    id: int
    title: str
    cosine: float
    keyword: float
    score: float
    related: frozenset[str] = frozenset()  # FAQ: normalised related policy titles
    passage: int | None = None  # policy: index of its best passage in the snapshot
    eligible: bool = True  # may be the answer (FAQ: its own question matches); else only a supporting citation
    asked: float | None = None  # FAQ: cosine of its own question and the asker's
    place_ok: bool = True  # FAQ: the region rule lets it answer (its policies' places fit the question's)

    @property
    def key(self) -> str:
        """Return a stable key: "policy:<id>" or "faq:<id>"."""
        return f"{self.source}:{self.id}"


@dataclass
class Retrieval:
    """Ranked candidates of a question and the raw confidence score of the best one."""

    candidates: list[Candidate]
    raw: float | None
    runner_up: Candidate | None
    snapshot: _Snapshot | None = None
    elsewhere: float | None = None  # best score of a policy the region rule took out
    floor: float = 0.0  # the runner-up score when there is none
    penalty: float = 0.0  # PERSONAL_PENALTY when only a person can answer


def _linked(a: Candidate, b: Candidate) -> bool:
    """Tell whether two candidates say the same thing: an FAQ entry and a policy it names as related."""
    if a.source == b.source:
        return False
    faq, policy = (a, b) if a.source == "faq" else (b, a)
    return normalize(policy.title) in faq.related


def expand_query(db: Session, question: str) -> str:
    """Return the text the search embeds for a question: abbreviations followed by their full names."""
    text = normalize(question)
    vocab = tags_mod.Vocabulary.from_db(db)
    return text + "".join(f" {name}" for name in vocab.find_in_text(text) if name not in text)


# Province-level names and large cities outside the code table: a question naming one of them is
# about another place than a site's local policies (the code table lists the site's own regions).
OTHER_PLACES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "内蒙古", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽",
    "福建", "江西", "山东", "河南", "湖北", "湖南", "广西", "海南", "四川", "贵州", "云南", "西藏", "陕西",
    "甘肃", "青海", "宁夏", "新疆", "香港", "澳门", "台湾", "石家庄", "太原", "沈阳", "大连", "长春", "哈尔滨",
    "南京", "苏州", "无锡", "杭州", "宁波", "温州", "合肥", "福州", "厦门", "南昌", "济南", "青岛", "郑州",
    "武汉", "长沙", "南宁", "海口", "成都", "贵阳", "昆明", "西安", "兰州", "西宁", "银川", "乌鲁木齐", "拉萨",
)  # fmt: skip
_REGION_SUFFIXES = ("特别行政区", "自治区", "自治州", "省", "市", "区", "县")


def _short_place(name: str) -> str:
    for suffix in _REGION_SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            return name[: -len(suffix)]
    return name


@functools.cache
def _place_table() -> tuple[tuple[str, str | None], ...]:
    """Return (name, region code or None) for every place a question may name, longest names first."""
    rows: dict[str, str | None] = {}
    # Provinces and cities claim a short name before districts do: 河北 is the province, not 天津's 河北区.
    rank = {level: i for i, level in enumerate(codes.REGION_LEVELS)}
    regions = codes.list_regions()
    # A county name several counties share (鼓楼区, 南山区) names none of them, nor does a bare two-character
    # one (城区, 矿区); a county's short name (振兴, 前进, 平安 are also words) is claimed only by the districts
    # of the four municipalities and the county-level cities a province governs directly (海淀, 浦东, 济源).
    # Where one of the counties sharing a name is a municipality's district, the name is that district's
    # (朝阳区 is 北京's, 普陀区 上海's), as it was when the table listed no other counties.
    provinces = {str(row["code"]) for row in regions if row["level"] == "省"}
    county_names: dict[str, list[dict]] = {}
    for row in regions:
        if row["level"] == "区县":
            county_names.setdefault(str(row["name"]), []).append(row)
    for row in sorted(regions, key=lambda r: rank.get(str(r["level"]), len(rank))):
        code, name = str(row["code"]), str(row["name"] or "")
        if code == codes.NATIONAL_REGION or not name:
            continue
        if row["level"] == "区县":
            sharing = county_names[name]
            municipal = [r for r in sharing if r["parent"] in provinces]
            if len(name) <= 2 or (len(sharing) > 1 and [r["code"] for r in municipal] != [code]):
                continue
            rows.setdefault(name, code)
            if row["parent"] in provinces:
                rows.setdefault(_short_place(name), code)
            continue
        rows.setdefault(name, code)
        rows.setdefault(_short_place(name), code)
    for name in OTHER_PLACES:
        rows.setdefault(name, None)
    return tuple(sorted(rows.items(), key=lambda kv: (-len(kv[0]), kv[0])))


# A title that opens with a place names the policy's own region (成都市…, 新乡高新区…, 武胜县…), whether or
# not the code table lists it; so do places in a closing bracket (…（广州、深圳）).
_TITLE_PLACE = re.compile(
    r"^([\u4e00-\u9fff]{2,4}?)(?:特别行政区|维吾尔自治区|壮族自治区|回族自治区|自治区|自治州|经济技术开发区|"
    r"综合实验区|高新区|新区|省|市|县|区)"
)
_CLOSING_BRACKET = re.compile(r"[（(]([^（）()]*)[)）]\s*$")


def title_places(title: str | None) -> frozenset[str]:
    """Return the short names of the places a policy title names as its own region (may be empty)."""
    text = normalize(title)
    found: set[str] = set()
    match = _TITLE_PLACE.match(text)
    if match:
        found.add(match.group(1))
    bracket = _CLOSING_BRACKET.search(text)
    if bracket:
        found.update(_short_place(name) for name, _ in place_mentions(bracket.group(1)))
    return frozenset(found)


def place_mentions(text: str, extra: Iterable[str] = ()) -> list[tuple[str, str | None]]:
    """Return (short name, region code or None) of every place a text names, longest names first.

    ``extra``: more place names to look for (the places policy titles name, see `title_places`).
    """
    clean = normalize(text)
    table = dict(_place_table())
    names = sorted({*table, *extra}, key=lambda n: (-len(n), n))
    found: list[tuple[str, str | None]] = []
    for name in names:
        if name and name in clean:
            code = table.get(name)
            short = _short_place(name)
            found.append((short, code if code is not None else table.get(short)))
            clean = clean.replace(name, "\x00")
    return found


def place_fits(mentions: Sequence[tuple[str, str | None]], region_codes: Sequence[str], own: frozenset[str]) -> bool:
    """Tell whether a policy may answer a question naming these places (see `place_mentions`).

    A question naming no place fits every policy. A policy whose title names its own places (``own``)
    fits when the question names one of them, or (by code) a region containing or within its regions;
    any other policy falls back to `region_fits` on the codes (nationwide policies fit everywhere).
    """
    if not mentions:
        return True
    codes_named = [code for _, code in mentions]
    if own:
        if any(name in own for name, _ in mentions):
            return True
        local = [r for r in region_codes if r != codes.NATIONAL_REGION]
        return bool(local) and any(c is not None for c in codes_named) and region_fits(codes_named, local)
    return region_fits(codes_named, region_codes)


def named_places(text: str) -> list[str | None]:
    """Return the regions a text names: a region code, or None for a place outside the code table."""
    clean = normalize(text)
    found: list[str | None] = []
    for name, code in _place_table():
        if name in clean:
            found.append(code)
            clean = clean.replace(name, "\x00")
    return found


def region_fits(places: Sequence[str | None], region_codes: Sequence[str]) -> bool:
    """Tell whether a policy of these regions may answer a question naming these places.

    A national policy, or a question naming no place, always fits; otherwise one named place must
    lie within a policy region or contain one (a question about 广东 may get a 中山 policy).
    """
    if not places or not region_codes or codes.NATIONAL_REGION in region_codes:
        return True
    for place in places:
        if place is None:
            continue
        for region in region_codes:
            if codes.region_contains(region, place) or codes.region_contains(place, region):
                return True
    return False


def retrieve(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    question: str,
    floor: float | None = None,
    region: str | None = None,
    faq_threshold: float | None = None,
) -> Retrieval:
    """Score policies (through the matcher's search) and FAQ entries for a question; best first.

    With ``region`` (the asking firm's), no policy whose regions exclude it is a candidate.
    ``faq_threshold``: the question–question cosine from which an FAQ entry may be the answer
    (default `FAQ_QUESTION_THRESHOLD`; a calibration manifest may carry its own).
    """
    faq_threshold = FAQ_QUESTION_THRESHOLD if faq_threshold is None else faq_threshold
    text = normalize(question)
    if not text:
        return Retrieval([], None, None)
    snap = _snapshot(db, matcher)
    query_vector = matcher.encode([expand_query(db, text)], "query")[0]
    query_grams = char_bigrams(text)
    candidates: list[Candidate] = []

    hits = matcher_search.search(db=db, matcher=matcher, q=text, limit=POLICY_CANDIDATES, region=region)
    if region:  # search keeps keyword hits of other regions; an answer to a firm never cites them
        hits = [h for h in hits if _applies_to(h.policy, region)]
    missing = [h.policy for h in hits if h.semantic is None]
    extra: dict[int, float] = {}
    if missing:
        vectors = matcher.encode([matcher_engine.policy_embedding_text(p) for p in missing], "passage")
        extra = {p.id: float(vectors[i] @ query_vector) for i, p in enumerate(missing)}
    mentions = place_mentions(text, snap.place_names)
    # Passages of the full texts: every policy's best passage, and the policies whose passages rank
    # highest join the search hits (a question about a clause deep in a text finds it there).
    best_passage: dict[int, tuple[float, int]] = {}
    if len(snap.passage_texts):
        passage_cos = snap.passage_vectors @ query_vector
        for i in np.argsort(-passage_cos, kind="stable"):
            pid = int(snap.passage_policy[i])
            if pid not in best_passage:
                best_passage[pid] = (float(passage_cos[i]), int(i))
    seen: set[int] = set()
    # The best policy the region rule took out: when another region's policy fits the question better
    # than every candidate left, the question is about that other place, and the answer is unsure.
    elsewhere: float | None = None

    def left_out(pid: int) -> None:
        nonlocal elsewhere
        seen.add(pid)
        cosine = best_passage.get(pid, (-1.0, None))[0]
        kw = coverage(query_grams, snap.policy_grams.get(pid, frozenset()), snap.idf, snap.unseen_idf)
        score = cosine + KEYWORD_WEIGHT * kw
        elsewhere = score if elsewhere is None else max(elsewhere, score)

    for hit in hits:
        p = hit.policy
        own = snap.policy_places.get(p.id)
        if not place_fits(mentions, p.region_codes, own if own is not None else title_places(p.title)):
            left_out(p.id)  # the question names another region than the policy's
            continue
        seen.add(p.id)
        grams = snap.policy_grams.get(p.id) or char_bigrams(
            policy_key_text(p.title, [(t.name, t.synonyms or []) for t in p.tags])
        )
        cosine = hit.semantic if hit.semantic is not None else extra[p.id]
        passage_cosine, passage = best_passage.get(p.id, (-1.0, None))
        cosine = max(cosine, passage_cosine)
        kw = coverage(query_grams, grams, snap.idf, snap.unseen_idf)
        candidates.append(Candidate("policy", p.id, p.title, cosine, kw, cosine + KEYWORD_WEIGHT * kw, passage=passage))
    ranked = sorted(best_passage.items(), key=lambda kv: -kv[1][0])
    added = 0
    for pid, (passage_cosine, passage) in ranked:
        if added >= POLICY_CANDIDATES:
            break
        regions = snap.policy_regions.get(pid, [])
        if pid in seen or pid not in snap.policy_titles:
            continue
        if not place_fits(mentions, regions, snap.policy_places.get(pid, frozenset())):
            left_out(pid)
            continue
        if region and not _region_applies(regions, region):
            continue  # a firm is never cited a policy of another region, however well a passage reads
        added += 1
        kw = coverage(query_grams, snap.policy_grams.get(pid, frozenset()), snap.idf, snap.unseen_idf)
        candidates.append(
            Candidate(
                "policy",
                pid,
                snap.policy_titles[pid],
                passage_cosine,
                kw,
                passage_cosine + KEYWORD_WEIGHT * kw,
                passage=passage,
            )
        )

    if snap.faq_ids:
        cosines = snap.faq_vectors @ query_vector
        # The question as search embeds it (with abbreviations spelled out): no second embedding per question.
        same_question = snap.faq_question_vectors @ query_vector
        for i, faq_id in enumerate(snap.faq_ids):
            kw = coverage(query_grams, snap.faq_grams[i], snap.idf, snap.unseen_idf)
            cosine = float(cosines[i])
            candidates.append(
                Candidate(
                    "faq",
                    faq_id,
                    "",
                    cosine,
                    kw,
                    cosine + KEYWORD_WEIGHT * kw,
                    related=snap.faq_related[i],
                    asked=float(same_question[i]),
                    # The region rule holds for FAQ entries too: their places are their policies' own.
                    place_ok=place_fits(mentions, [], snap.faq_places[i]),
                )
            )
    penalty = PERSONAL_PENALTY if needs_person(text) else 0.0
    floor = floor if floor is not None else matcher.settings.semantic_floor
    return rank(
        Retrieval(candidates, None, None, snap, elsewhere=elsewhere, floor=floor, penalty=penalty), faq_threshold
    )


def rank(retrieval: Retrieval, faq_threshold: float = FAQ_QUESTION_THRESHOLD) -> Retrieval:
    """Order a retrieval's candidates and score its best one for an FAQ question–question threshold.

    Cheap (no embedding, no database): the evaluation re-ranks one retrieval for several thresholds.
    """
    candidates = [
        replace(c, eligible=c.asked is not None and c.asked >= faq_threshold and c.place_ok) if c.source == "faq" else c
        for c in retrieval.candidates
    ]
    # Answers first (best score first), then FAQ entries that may only back one.
    candidates.sort(key=lambda c: (not c.eligible, -c.score, c.source, c.id))
    out = Retrieval(
        candidates,
        None,
        None,
        retrieval.snapshot,
        elsewhere=retrieval.elsewhere,
        floor=retrieval.floor,
        penalty=retrieval.penalty,
    )
    if not candidates or not candidates[0].eligible:
        return out
    top = candidates[0]
    runner_up = next((c for c in candidates[1:] if c.eligible and not _linked(top, c)), None)
    second = runner_up.score if runner_up is not None else retrieval.floor
    if retrieval.elsewhere is not None:
        second = max(second, retrieval.elsewhere)
    out.raw = top.score + MARGIN_WEIGHT * (top.score - second) - retrieval.penalty
    out.runner_up = runner_up
    return out


def _applies_to(policy: Policy, region: str) -> bool:
    """Tell whether a policy may be offered to a firm of the region (nationwide, or a region containing it)."""
    return _region_applies(policy.region_codes, region)


def _region_applies(regions: Sequence[str], region: str) -> bool:
    return not regions or any(codes.region_contains(r, region) for r in regions)


def needs_person(question: str) -> bool:
    """Tell whether a question is about the asker's own case or asks staff to act (see PERSONAL)."""
    return bool(PERSONAL.search(normalize(question)))


# ---------------------------------------------------------------- composing the answer


def _date(d: dt.date | None) -> str:
    return f"{d.year}年{d.month}月{d.day}日" if d else ""


def _clean(text: str | None) -> str:
    """Return stored text for display: whitespace collapsed, punctuation left as written."""
    return " ".join((text or "").split())


def _sentences(text: str | None) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(_clean(text)) if s.strip()]


def _best_sentences(
    text: str | None, query: frozenset[str], idf: dict[str, float], unseen: float, k: int, *, whole: bool = False
) -> list[str]:
    """Return up to k sentences of text that share the most (IDF-weighted) bigrams with the query, in text order.

    whole: split at full stops only, so a list of items separated by "；" is quoted whole.
    """
    sentences = [x.strip() for x in _FULL_SENTENCE.split(_clean(text)) if x.strip()] if whole else _sentences(text)
    scored = [(coverage(query, char_bigrams(s), idf, unseen), i) for i, s in enumerate(sentences)]
    chosen = sorted((i for score, i in sorted(scored, key=lambda x: (-x[0], x[1]))[:k] if score > 0))
    return [sentences[i] for i in chosen]


def _window_text(policy: Policy, today: dt.date) -> str:
    """Describe a policy's application window in words."""
    if policy.policy_type != PolicyType.application:
        return {"exempt": "免申即享，无需申报", "informational": "无需单独申报，按规定享受"}.get(
            str(policy.policy_type), ""
        )
    start, end = policy.apply_start_on, policy.apply_end_on
    if end is not None and end < today:
        return f"本期申报已于{_date(end)}截止"
    if start and end:
        return f"{_date(start)}至{_date(end)}"
    if end:
        return f"截至{_date(end)}"
    if start:
        return f"{_date(start)}起"
    return "常年受理"


def _condition_lines(policy: Policy, query: frozenset[str], limit: int = 6) -> list[str]:
    """Return the policy's conditions in words: all when few, else those closest to the question first."""
    if not policy.rules:
        return []
    lines = [ln.strip() for ln in rules_mod.describe_rules(policy.rules, region_name=codes.region_name)]
    lines = [ln for ln in lines if ln and not ln.endswith(("：", ":"))]
    if len(lines) <= limit:
        return lines
    ranked = sorted(range(len(lines)), key=lambda i: (-len(query & char_bigrams(lines[i])), i))[:limit]
    return [lines[i] for i in sorted(ranked)]


def _policy_text(
    policy: Policy, query: frozenset[str], snap: _Snapshot, today: dt.date, passage: int | None = None
) -> tuple[str, str]:
    """Return (answer text, quoted passage) for a policy: the sentences of its best passage that answer first."""
    head = f"《{policy.title}》" + (f"（{policy.doc_number}）" if policy.doc_number else "")
    summary = _clean(policy.summary)
    lines = [f"根据{head}："]
    excerpt = ""
    if passage is not None and 0 <= passage < len(snap.passage_texts):
        chosen = [passage]
        if QUOTE_LEXICAL:
            # The passage sharing the most words with the question may hold the figure asked for even when
            # another passage of the policy reads closer in meaning: quote both, in text order.
            own = [i for i in range(len(snap.passage_texts)) if int(snap.passage_policy[i]) == policy.id]

            def overlap(i: int) -> float:
                return coverage(query, char_bigrams(snap.passage_texts[i]), snap.idf, snap.unseen_idf)

            lexical = max(own, key=lambda i: (overlap(i), -i), default=passage)
            if lexical != passage and overlap(lexical) > overlap(passage):
                chosen = sorted([passage, lexical])
        parts = []
        for i in chosen:
            text = "".join(_best_sentences(snap.passage_texts[i], query, snap.idf, snap.unseen_idf, 2, whole=True))
            parts.append(text or _clean(snap.passage_texts[i]))
        excerpt = "".join(parts)
        lines.append(f"原文：{excerpt}")
    if summary and summary not in excerpt:
        lines.append(summary)
    quoted = [
        s for s in _best_sentences(policy.interpretation, query, snap.idf, snap.unseen_idf, 2) if s not in summary
    ]
    if quoted:
        lines.append("政策解读：" + "".join(quoted))
    if policy.amount_text:
        lines.append(f"支持标准：{_clean(policy.amount_text)}")
    conditions = _condition_lines(policy, query)
    if conditions:
        lines.append("申报条件：")
        lines.extend(f"· {c}" for c in conditions)
    window = _window_text(policy, today)
    if window:
        lines.append(f"申报时间：{window}")
    dept = policy.handling_department or policy.issuing_department
    contact = []
    if dept is not None:
        contact.append(dept.name + (f"（电话 {dept.contact_phone}）" if dept.contact_phone else ""))
    if policy.interpreter_contact:
        who = f"{policy.interpreter_name} " if policy.interpreter_name else ""
        contact.append(f"政策解读：{who}{_clean(policy.interpreter_contact)}")
    if contact:
        lines.append("办理部门与联系方式：" + "；".join(contact))
    if policy.apply_url:
        lines.append(f"申报入口：{policy.apply_url}")
    quote = excerpt or "".join([summary, *quoted]) or _clean(policy.title)
    return "\n".join(lines), clip_text(quote, 300)


def _faq_text(entry: FaqEntry) -> tuple[str, str]:
    """Return (answer text, quoted passage) for an FAQ entry."""
    answer = _clean(entry.answer)
    return f"{answer}\n（来源：常见问题「{_clean(entry.question)}」）", clip_text(answer, 300)


def _citation(
    db: Session, cand: Candidate, query: frozenset[str], snap: _Snapshot, today: dt.date, region: str | None = None
) -> tuple[Citation, str] | None:
    """Return the citation of a candidate and the text it contributes, or None when it vanished
    (or, with ``region``, when the policy's regions exclude the asking firm's)."""
    if cand.source == "policy":
        policy = db.scalar(
            select(Policy)
            .where(Policy.id == cand.id)
            .options(selectinload(Policy.handling_department), selectinload(Policy.tags))
        )
        if policy is None or (region and not _applies_to(policy, region)):
            return None
        text, passage = _policy_text(policy, query, snap, today, cand.passage)
        return Citation(
            "policy",
            policy.id,
            policy.doc_number,
            policy.title,
            POLICY_URL.format(id=policy.id),
            passage,
            round(cand.score, 4),
        ), text
    entry = db.get(FaqEntry, cand.id)
    if entry is None:
        return None
    text, passage = _faq_text(entry)
    return Citation(
        "faq", entry.id, entry.code, _clean(entry.question), FAQ_URL.format(id=entry.id), passage, round(cand.score, 4)
    ), text


def _supporting(top: Candidate, candidates: Sequence[Candidate], snap: _Snapshot) -> list[Candidate]:
    """Return candidates that back the top one: the policies an FAQ names, or FAQ entries naming the policy."""
    out = [c for c in candidates[1:] if _linked(top, c)]
    if top.source == "faq":
        # An FAQ may name a related policy that search did not rank; cite it when it is published.
        ranked = {c.id for c in out if c.source == "policy"}
        for pid, title in snap.policy_titles.items():
            if title in top.related and pid not in ranked:
                out.append(Candidate("policy", pid, title, 0.0, 0.0, 0.0))
    return out[: MAX_CITATIONS - 1]


DISCLAIMER = "以上答复由系统根据政策库和常见问题自动生成，仅供参考；如未解决您的问题，可选择“转人工办理”。"
NOT_SURE = "暂时无法给出确定的答复，您的诉求将转交工作人员办理。"


def answer_question(
    *,
    db: Session,
    matcher: matcher_engine.Matcher,
    question: str,
    settings: Settings | None = None,
    today: dt.date | None = None,
    region: str | None = None,
) -> InstantAnswer:
    """Answer a question from the knowledge base, citing the sources; confident when above the threshold.

    ``region`` is the asking firm's: a policy whose regions exclude it is never cited.
    """
    settings = settings or matcher.settings
    today = today or dt.date.today()
    calibration = load_calibration(settings)
    threshold = round(calibration.threshold, 4)
    retrieval = retrieve(
        db=db,
        matcher=matcher,
        question=question,
        floor=settings.semantic_floor,
        region=region,
        faq_threshold=calibration.faq_threshold,
    )
    if not retrieval.candidates or retrieval.raw is None:
        return InstantAnswer(False, 0.0, threshold, NOT_SURE + "知识库中没有找到相关内容。", [])
    confidence = round(calibration.confidence(retrieval.raw), 4)
    confident = confidence >= threshold
    snap = retrieval.snapshot or _snapshot(db, matcher)
    query = char_bigrams(question)
    top = retrieval.candidates[0]
    # A confident answer cites its source and what backs it; an unsure one lists the closest sources.
    chosen = [top, *_supporting(top, retrieval.candidates, snap)] if confident else retrieval.candidates[:MAX_CITATIONS]
    citations: list[Citation] = []
    texts: list[str] = []
    for cand in chosen:
        made = _citation(db, cand, query, snap, today, region)
        if made is not None:
            citations.append(made[0])
            texts.append(made[1])
    if not citations:
        return InstantAnswer(False, 0.0, threshold, NOT_SURE, [])
    if confident:
        body = [texts[0]]
        related = [c for c in citations[1:] if c.source != citations[0].source]
        if related and citations[0].source == "faq":
            body.append("相关政策：" + "、".join(f"《{c.title}》" for c in related))
        elif related:
            body.append("相关常见问题：" + "、".join(f"「{c.title}」" for c in related))
        body.append(DISCLAIMER)
        text = "\n".join(body)
    else:
        listing = [
            f"{i}. {'《' + c.title + '》' if c.source == 'policy' else '常见问题：' + c.title}"
            for i, c in enumerate(citations, 1)
        ]
        text = "\n".join([NOT_SURE + "以下内容可能与您的问题相关，仅供参考：", *listing])
    return InstantAnswer(confident, confidence, threshold, text, citations)
