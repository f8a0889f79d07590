#!/usr/bin/env python3
"""Score the models a `seremotion-trainer cv` run kept, again, through the
element's inference path (`seremotion-trainer eval`), clean and through the
telephone channel, with other analysis settings: what its held-out figures
become under them without training again.

Usage: scripts/rescore_cv.py CV_OUT MANIFEST [EVAL_OPTION ...]
  e.g. scripts/rescore_cv.py cv ../shared/datasets/MANIFEST.csv --speech-threshold -65

Each CV_OUT/models/*.onnx lists the voices its partition trained and
validated on; `eval` scores every other voice of the manifest (ASED on its
common sentences only) apart from those. Prints UA per corpus, mean over the
partitions that tested it, clean / phone. The trainer is
$SEREMOTION_TRAINER, or target/release/seremotion-trainer under
$CARGO_TARGET_DIR (else ./target).
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGETS = ["ased", "nemo", "ravdess", "savee"]


def trainer():
    if "SEREMOTION_TRAINER" in os.environ:
        return os.environ["SEREMOTION_TRAINER"]
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    return str(Path(target) / "release" / "seremotion-trainer")


def held_out(model, manifest, options, telephony, scratch):
    out = Path(scratch) / (model.stem + ("-phone" if telephony else "-clean") + ".json")
    cmd = [trainer(), "eval", "--manifest", manifest, "--model", str(model), "--json", str(out),
           "--plots", str(Path(scratch) / "plots"), *options]
    if telephony:
        cmd.append("--telephony")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    report = json.loads(out.read_text())
    return {c: m["unweighted_accuracy"] for c, m in report["per_corpus"].items()}


def main(args):
    if len(args) < 2:
        sys.exit(__doc__)
    cv_out, manifest, options = Path(args[0]), args[1], args[2:]
    models = sorted((cv_out / "models").glob("*.onnx"))
    if not models:
        sys.exit(f"no models in {cv_out / 'models'} (a cv run of an older trainer keeps none)")
    scores = {}  # corpus -> (clean list, phone list)
    with tempfile.TemporaryDirectory() as scratch:
        for model in models:
            clean = held_out(model, manifest, options, False, scratch)
            phone = held_out(model, manifest, options, True, scratch)
            print(model.name + ": " + ", ".join(
                f"{c} {100 * clean[c]:.1f}/{100 * phone[c]:.1f}" for c in sorted(clean)),
                file=sys.stderr)
            for c in clean:
                lists = scores.setdefault(c, ([], []))
                lists[0].append(clean[c])
                lists[1].append(phone[c])
    print(f"Held-out UA (%), clean / phone, mean over partitions; eval options: "
          f"{' '.join(options) or 'none'}\n")
    print("| corpus | partitions | clean | phone |")
    print("|---|---:|---:|---:|")
    means = {}
    for c in sorted(scores):
        clean, phone = scores[c]
        means[c] = (100 * statistics.mean(clean), 100 * statistics.mean(phone))
        print(f"| {c} | {len(clean)} | {means[c][0]:.1f} | {means[c][1]:.1f} |")
    if all(c in means for c in TARGETS):
        clean = statistics.mean(means[c][0] for c in TARGETS)
        phone = statistics.mean(means[c][1] for c in TARGETS)
        print(f"| mean of {', '.join(TARGETS)} | | {clean:.1f} | {phone:.1f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
