#!/usr/bin/env python3
"""Held-out UA of trainer runs, clean / telephone, per corpus, and their mean.

Usage: scripts/summarize_runs.py OUT_DIR [OUT_DIR ...]
Each OUT_DIR is a `seremotion-trainer train --out` folder (its training.json).
The mean row is what models/EXPERIMENTS.md quotes for a recipe over splits.
"""
import json
import sys
from pathlib import Path


def ua(results, part, corpus):
    scope = results.get(part, {})
    m = scope.get("overall") if corpus == "all" else scope.get("per_corpus", {}).get(corpus)
    return None if m is None else 100.0 * m["unweighted_accuracy"]


def main(dirs):
    if not dirs:
        sys.exit(__doc__)
    runs = []
    for d in dirs:
        path = Path(d) / "training.json"
        try:
            t = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            sys.exit(f"{path}: {e}")
        runs.append((d, t.get("seed"), t.get("results", {})))
    corpora = sorted({c for _, _, r in runs for c in r.get("test-clean", {}).get("per_corpus", {})})
    corpora.append("all")
    print("| run | seed | " + " | ".join(corpora) + " |")
    print("|---|---:|" + "---:|" * len(corpora))
    sums = {c: [0.0, 0.0, 0] for c in corpora}
    for d, seed, r in runs:
        cells = []
        for c in corpora:
            clean, phone = ua(r, "test-clean", c), ua(r, "test-telephone", c)
            if clean is None or phone is None:
                cells.append("–")
                continue
            cells.append(f"{clean:.1f} / {phone:.1f}")
            s = sums[c]
            s[0] += clean
            s[1] += phone
            s[2] += 1
        print(f"| {d} | {seed} | " + " | ".join(cells) + " |")
    means = []
    for c in corpora:
        clean, phone, n = sums[c]
        means.append(f"**{clean / n:.1f} / {phone / n:.1f}**" if n else "–")
    print(f"| mean of {len(runs)} | | " + " | ".join(means) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
