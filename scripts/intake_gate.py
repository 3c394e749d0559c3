"""Would a learned gate over intake's proposed conditions beat the rules alone? (tune split only)

Every coded condition intake proposes for a tuning-half document is a candidate, labelled correct when the
document's hand labels hold it. A logistic regression over simple features (field, confidence, whether the text
has condition headings, alternatives, award and requirement words in the source clause, position, clause length,
candidates in the document) is fitted and scored with 5-fold cross-validation grouped by document; a candidate
is kept when its out-of-fold probability reaches the threshold, otherwise it would be shown as a low-confidence
suggestion. Printed: the rule-only precision / recall on the same candidates and the gate's at each threshold.
Nothing is saved and the held-out split is never read.

    PYTHONPATH=$PWD .venv/bin/python scripts/intake_gate.py
"""

from __future__ import annotations

import math
import re

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from catalog.intake import evaluation
from catalog.intake.conditions import _AWARD, ConditionProposal, _condition_clauses, propose_conditions
from catalog.intake.extract import clean_text, split_sections
from catalog.intake.fields import extract_fields

FIELDS = (
    "region_code", "qualifications", "annual_revenue", "rd_ratio", "credit_standing", "size_class",
    "established_on", "industry_code", "rd_expense", "employees", "total_assets",
)  # fmt: skip
CUE = re.compile(r"须|应|需|具备|符合|满足|条件|要求")


def candidates() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    rows: list[list[float]] = []
    labels: list[int] = []
    groups: list[int] = []
    labelled = 0
    for i, doc in enumerate(evaluation.load("tune")):
        text = clean_text(doc.text)
        region = extract_fields(text).get("region_code")
        sections = split_sections(text)
        _, headed = _condition_clauses(text, sections)
        best: dict[tuple[str, str, str], ConditionProposal] = {}
        for p in propose_conditions(text, sections=sections, home_region=region.value if region else None):
            key = p.key()
            if key is not None and (key not in best or p.confidence > best[key].confidence):
                best[key] = p
        gold = set(doc.conditions)
        labelled += len(gold)
        for key, p in best.items():
            source = p.source
            position = text.find(source[:20]) / max(1, len(text)) if source else 0.5
            rows.append(
                [1.0 if key[0] == name else 0.0 for name in FIELDS]
                + [
                    p.confidence,
                    float(headed),
                    float(p.group is not None),
                    float(bool(_AWARD.search(source))),
                    float(bool(CUE.search(source))),
                    position,
                    math.log1p(len(source)),
                    float(len(best)),
                ]
            )
            labels.append(int(key in gold))
            groups.append(i)
    return np.array(rows), np.array(labels), np.array(groups), labelled


def main() -> None:
    x, y, groups, labelled = candidates()
    print(f"tune candidates {len(y)}: correct {int(y.sum())}, wrong {int(len(y) - y.sum())}; labelled {labelled}")
    print(f"rules alone      precision {y.mean():.3f} recall {y.sum() / labelled:.3f}")
    out_of_fold = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=5).split(x, y, groups):
        model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(x[train], y[train])
        out_of_fold[test] = model.predict_proba(x[test])[:, 1]
    for threshold in (0.1, 0.2, 0.3, 0.4, 0.5):
        keep = out_of_fold >= threshold
        tp = int(y[keep].sum())
        print(
            f"gate t={threshold:.1f}  precision {tp / max(1, int(keep.sum())):.3f} recall {tp / labelled:.3f}"
            f"  (dropped {int(y[~keep].sum())} correct, {int((1 - y[~keep]).sum())} wrong)"
        )


if __name__ == "__main__":
    main()
