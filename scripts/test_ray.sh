#!/usr/bin/env bash
# Test of scripts/analyze_on_ray.sh (run by scripts/test.sh): starts a Ray
# cluster on the loopback interface (a head and one worker node, one CPU
# each), analyses generated stereo calls on it and checks that results.jsonl,
# calls.csv and report.html are byte for byte those of a local run, and that
# tasks ran on both nodes. Stops the cluster it started, by process id.
#
# Environment: SEREMOTION_ANALYZE (default: seremotion-analyze on PATH),
# SEREMOTION_VENV (default: <repo>/.venv, with Ray from scripts/setup.sh).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${SEREMOTION_VENV:-$repo/.venv}
ray=$venv/bin/ray
analyzer=${SEREMOTION_ANALYZE:-$(command -v seremotion-analyze || true)}
[ -x "$analyzer" ] || { echo "test_ray: seremotion-analyze not found (scripts/setup.sh installs it)" >&2; exit 1; }
export SEREMOTION_ANALYZE=$analyzer RAY_USAGE_STATS_ENABLED=0

say() { printf '\033[1m[test_ray]\033[0m %s\n' "$*" >&2; }
fail() { printf '\033[1;31m[test_ray] FAILED:\033[0m %s\n' "$*" >&2; exit 1; }

# Short path: Ray's unix sockets live under it.
work=$(mktemp -d /tmp/seremotion-ray.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

say "generating calls in $work/calls"
mkdir -p "$work/calls/b"
i=0
for text in "I have been waiting for an hour. This is unacceptable!" \
            "Thank you so much, that is wonderful news." \
            "I am not sure. Maybe next week would be better." \
            "Why does nobody ever call me back? I am very upset."; do
  i=$((i + 1))
  espeak-ng -v en-us -p 40 -w "$work/agent.wav" "Hello, thank you for calling. How can I help you today?"
  espeak-ng -v en-us -p 70 -w "$work/customer.wav" "$text"
  dir=$work/calls; [ $((i % 2)) -eq 0 ] && dir=$work/calls/b
  sox -M "$work/agent.wav" "$work/customer.wav" "$dir/call$i.wav"
done

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.2", 0)); print(s.getsockname()[1])')
# Loopback addresses only. Ray replaces 127.0.0.1 (and localhost) with the
# machine's outward address; other addresses of 127.0.0.0/8 it takes as given.
address=127.0.0.2:$port
# The cluster's own token, shared by its nodes and the driver through the environment.
RAY_AUTH_TOKEN=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN RAY_AUTH_MODE=token
common=(--num-cpus=1 --disable-usage-stats --block)
say "starting a Ray head at $address and one worker node"
# --block keeps each node's processes under one process, which stops them all on SIGTERM.
"$ray" start --head --node-ip-address=127.0.0.2 --port="$port" --include-dashboard=false \
  --temp-dir="$work/ray" "${common[@]}" >"$work/head.log" 2>&1 &
pids+=($!)
nodes() {
  timeout 20 "$venv/bin/python" - "$address" <<'PY' 2>/dev/null
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
PY
}
wait_for_nodes() {
  for _ in $(seq 20); do [ "$(nodes || true)" = "$1" ] && return 0; sleep 1; done
  return 1
}
wait_for_nodes 1 || { cat "$work/head.log" >&2; fail "the Ray head did not start"; }
"$ray" start --address="$address" --node-ip-address=127.0.0.3 "${common[@]}" >"$work/worker.log" 2>&1 &
pids+=($!)
wait_for_nodes 2 || { cat "$work/worker.log" >&2; fail "the Ray worker did not join"; }

say "local run"
"$analyzer" --per-channel --out "$work/local" "$work/calls"
say "Ray run"
RAY_ADDRESS=$address "$repo/scripts/analyze_on_ray.sh" "$work/ray-out" --per-channel "$work/calls" 2>&1 |
  tee "$work/ray.log"
grep -q 'tasks ran on 2 nodes' "$work/ray.log" || fail "the tasks did not run on both nodes"
for f in results.jsonl calls.csv report.html; do
  cmp "$work/local/$f" "$work/ray-out/$f" || fail "$f differs between the local and the Ray run"
done
[ "$(wc -l <"$work/local/calls.csv")" -eq 9 ] || fail "expected 8 rows in calls.csv"
say "1 passed, 0 failed"
