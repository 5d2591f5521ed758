"""Scores of the finished folds of a stopped run: serjax.metrics.summarize_results over
WORKDIR/folds/*.json (a run stopped before its last fold writes no summary.json).

    python bench/partial_summary.py WORKDIR OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serjax.metrics import summarize_results  # noqa: E402


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    workdir, out = Path(args[0]), Path(args[1])
    results = [json.loads(p.read_text()) for p in sorted((workdir / "folds").glob("*.json"))]
    if not results:
        print(f"{workdir / 'folds'}: no finished fold", file=sys.stderr)
        return 1
    summary = summarize_results(results)
    summary.pop("eca_weights", None)
    summary.pop("eca_weights_model", None)
    summary["folds_finished"] = [r["fold"] for r in results]
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        {
            m: (round(100 * summary[m]["mean"], 2), round(100 * summary[m]["std"], 2))
            for m in ("ua", "wa", "acc", "f1")
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
