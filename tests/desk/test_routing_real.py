"""Routing on real public Chinese questions the project never tuned on (tests/data/README.md).

The tuning split (routing_real_tune.csv) trains the product's model exactly as `huiqi desk train`
does — candidates cross-validated against the plain baseline, the threshold chosen on held-out folds
for the target precision — and the test split (routing_real_test.csv) measures it, with the plain
baseline (char n-gram TF-IDF + LinearSVC, balanced classes) fitted on the same tuning split.

Measured (seed 0, `huiqi eval routing tests/data/routing_real_test.csv --train
tests/data/routing_real_tune.csv`): with e5 candidates the product (e5-logreg selected) scores
macro-F1 0.969, accuracy 0.974 against the baseline's 0.857 / 0.868, and routes 98.7 %
automatically at precision 0.987; text-only (`--no-embeddings`, char-svm+keywords selected) 0.916 /
0.921 against the same baseline, 97.4 % routed at precision 0.919.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import get_settings
from desk import routing_eval

DATA = Path(__file__).resolve().parent.parent / "data"
TUNE, TEST = DATA / "routing_real_tune.csv", DATA / "routing_real_test.csv"
PRECISION_FLOOR = 0.90


def _check(result: dict) -> None:  # type: ignore[type-arg]
    product, baseline = result["product"], result["baseline"]
    assert result["n"] == 76 and result["departments"] == 9
    assert product["macro_f1"] >= baseline["macro_f1"], result
    assert product["auto_routed_share"] > 0.5 and product["auto_routed_precision"] >= PRECISION_FLOOR, result
    assert product["chain_precision"] >= PRECISION_FLOOR, result


def test_the_text_only_router_beats_the_plain_baseline_on_real_questions() -> None:
    result = routing_eval.evaluate_routing(routing_eval.read_labelled(TEST), train=routing_eval.read_labelled(TUNE))
    _check(result)


@pytest.mark.slow
def test_the_router_with_embeddings_beats_the_plain_baseline_on_real_questions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from matcher import engine

    settings = get_settings().model_copy(update={"var_dir": tmp_path})
    matcher = engine.Matcher(settings)
    try:
        result = routing_eval.evaluate_routing(
            routing_eval.read_labelled(TEST),
            train=routing_eval.read_labelled(TUNE),
            encode=lambda texts: matcher.encode(list(texts), "query"),
        )
    finally:
        matcher.close()
    _check(result)
