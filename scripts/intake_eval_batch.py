"""Score intake on one batch of labelled texts (an id range), per split, with the keyword baseline alongside.

Used to measure a newly added batch out of sample (tests/data/README.md, "Session 10 additions"):

    PYTHONPATH=$PWD .venv/bin/python scripts/intake_eval_batch.py --first d253 --last d271 --split fresh
    PYTHONPATH=$PWD .venv/bin/python scripts/intake_eval_batch.py --first d253 --last d271 --split tune --verbose

The misses are listed only for the tuning half (`--verbose` is refused for `fresh` and `test`, which are
scored in aggregate only).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from catalog.intake import evaluation


def _num(doc_id: str) -> int:
    return int(doc_id.lstrip("d"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", required=True, help="first id of the batch, e.g. d253")
    parser.add_argument("--last", required=True, help="last id of the batch, e.g. d271")
    parser.add_argument("--split", default="all", choices=["tune", "test", "fresh", "all"])
    parser.add_argument("--verbose", action="store_true", help="list the misses (tune only)")
    args = parser.parse_args(argv)
    if args.verbose and args.split != "tune":
        parser.error("--verbose lists misses one by one: only for --split tune")
    lo, hi = _num(args.first), _num(args.last)
    result = evaluation.run(args.split, verbose=args.verbose, only=lambda doc_id: lo <= _num(doc_id) <= hi)
    print(evaluation.format_report(dataclasses.replace(result, split=f"{args.split} {args.first}–{args.last}")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
