"""Table 1's grouped runs trained again with the retry of an unlearned last stage: what changed.

    python benchmarks/retry_reruns.py            # compare, write results/retry_reruns.json
    python benchmarks/retry_reruns.py --settle   # then put back the runs that did not change

Before the rerun, the runs were moved from ``glue-grouped[-density]/<method>/`` to
``glue-grouped[-density]-no-retry/<method>/`` and ``glue_matrix.py`` trained them again. For
each pair this records whether the retry fired and whether the dev score and best step are the
same. ``--settle`` moves each unchanged run's original JSON back into place (the rerun is the
same run to the bit, so the table keeps its original record, train time included) and leaves
only the runs the retry changed in the ``-no-retry`` folders, which BENCHMARKS.md shows as the
table without the retry.

Since the retry keeps the best dev state of both tries, the runs it fired on were trained again
(their earlier records, where only the retry's epochs were candidates, are in git history at
commit 7515497); ``kept`` says which try each kept.
"""

from __future__ import annotations

import argparse
import json
import shutil

from _report import RESULTS, run_info

PAIRS = (("glue-grouped-no-retry", "glue-grouped"),
         ("glue-grouped-density-no-retry", "glue-grouped-density"))


def compare() -> list[dict]:
    rows = []
    for earlier_dir, current_dir in PAIRS:
        for earlier in sorted((RESULTS / earlier_dir).glob("*/*.json")):
            current = RESULTS / current_dir / earlier.parent.name / earlier.name
            if not current.is_file():
                rows.append({"run": f"{current_dir}/{earlier.parent.name}/{earlier.name}",
                             "rerun": False})
                continue
            old, new = json.loads(earlier.read_text()), json.loads(current.read_text())
            rows.append({
                "run": f"{current_dir}/{earlier.parent.name}/{earlier.name}", "rerun": True,
                "retry_fired": "retry" in new,
                "same": old["dev"] == new["dev"] and old.get("best_step") == new.get("best_step"),
                "dev_before": old["dev"], "dev_after": new["dev"],
                "first_try_dev": new.get("retry", {}).get("first_best_scores"),
                "kept": new.get("retry", {}).get("kept")})
    return rows


def settle(rows: list[dict]) -> None:
    for row in rows:
        if row["rerun"] and row["same"] and not row["retry_fired"]:
            current = RESULTS / row["run"]
            top, method, name = row["run"].split("/")
            earlier = RESULTS / f"{top}-no-retry" / method / name
            shutil.move(earlier, current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", action="store_true")
    args = parser.parse_args()
    rows = compare()
    for r in rows:
        if not r["rerun"]:
            print(f"{r['run']}: not rerun yet")
        else:
            state = f"retried, kept the {r['kept']}" if r["retry_fired"] else "no retry"
            print(f"{r['run']}: {state}, {'same' if r['same'] else 'changed'}: "
                  f"{r['dev_before']} -> {r['dev_after']}")
    (RESULTS / "retry_reruns.json").write_text(json.dumps(
        {**run_info(), "runs": rows},
        indent=2) + "\n")
    if args.settle:
        settle(rows)


if __name__ == "__main__":
    main()
