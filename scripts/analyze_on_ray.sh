#!/usr/bin/env bash
# seremotion-analyze as a Ray job: the files are shared out as tasks over the
# cluster at $RAY_ADDRESS (or a local cluster started for the job), and the
# results merged into OUT/results.jsonl, calls.csv and report.html, the same
# as one local `seremotion-analyze --out OUT ...` run.
#
#   scripts/analyze_on_ray.sh OUT [--per-channel] [--customer-channel N] [--model FILE] INPUT...
#
# Environment: RAY_ADDRESS (e.g. 10.0.0.5:6379; unset: a local cluster),
# SEREMOTION_ANALYZE (the analyser on every node; default: seremotion-analyze on PATH),
# SEREMOTION_VENV (the virtualenv with Ray; default: <repo>/.venv, made by scripts/setup.sh).
# Exit status as seremotion-analyze's: 0 all done, 2 some files failed, 1 the job failed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${SEREMOTION_VENV:-$repo/.venv}
[ $# -ge 2 ] || { echo "usage: $0 OUT [--per-channel] [--customer-channel N] [--model FILE] INPUT..." >&2; exit 1; }
"$venv/bin/python" -c 'import ray' 2>/dev/null ||
  { echo "analyze_on_ray: Ray is not installed in $venv: run scripts/setup.sh" >&2; exit 1; }
# No usage statistics leave the machine.
export RAY_USAGE_STATS_ENABLED=0
exec "$venv/bin/python" "$repo/scripts/analyze_on_ray.py" "$@"
