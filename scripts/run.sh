#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the seremotion element with
# the embedded default model over a recording and prints one line per result.
# Without a file it then also makes a stereo call (agent on channel 0, customer
# on channel 1) and analyses it with seremotion-analyze, the batch tool for call
# recordings: results.jsonl, calls.csv and report.html.
#
#   scripts/run.sh                 # a spoken sample made with espeak-ng, then a sample call
#   scripts/run.sh call.wav        # your own file: WAV, FLAC, MP3, anything decodebin reads
#   scripts/run.sh call.wav per-channel
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seremotion/target}
"$repo/scripts/setup.sh"

input=${1:-}
mode=${2:-mix}
if [ -z "$input" ]; then
  # Corpus audio may not be redistributed; synthesise a sample instead.
  input="$CARGO_TARGET_DIR/sample.wav"
  espeak-ng -v en-us -s 150 -w "$input" \
    "Hello, thank you for calling. I have been waiting for forty minutes and nobody has helped me. \
     This is absolutely unacceptable! I want to speak to a manager right now. \
     Oh, well, thank you, that is wonderful news, I am so glad you could fix it."
  echo "[run] sample: $input (espeak-ng)" >&2
fi
[ -f "$input" ] || { echo "[run] error: no such file: $input" >&2; exit 1; }

cargo run --quiet --release --manifest-path "$repo/Cargo.toml" -p gst-plugin-seremotion \
  --example emotion_monitor -- "$input" "$mode"

if [ -z "${1:-}" ]; then
  # A sample stereo call: the agent calm, the customer upset and then relieved.
  call_dir="$CARGO_TARGET_DIR/sample-call"
  mkdir -p "$call_dir"
  espeak-ng -v en-us -p 40 -s 150 -w "$call_dir/agent.wav" \
    "Good morning, thank you for calling. How can I help you? I am sorry to hear that. \
     Let me check your account. I have refunded the second charge, it will be on your card tomorrow."
  espeak-ng -v en-us -p 70 -s 180 -w "$call_dir/customer.wav" \
    "I was charged twice this month and nobody answers my emails! This is the third time I call. \
     Really? Oh, thank you, that is great, thank you so much."
  sox -M "$call_dir/agent.wav" "$call_dir/customer.wav" "$call_dir/call.wav"
  analyze=$(command -v seremotion-analyze || echo "$CARGO_TARGET_DIR/release/seremotion-analyze")
  echo "[run] seremotion-analyze --per-channel --out $call_dir/analysis $call_dir/call.wav" >&2
  "$analyze" --per-channel --out "$call_dir/analysis" "$call_dir/call.wav"
  column -s, -t <"$call_dir/analysis/calls.csv" 2>/dev/null || cat "$call_dir/analysis/calls.csv"
  echo "[run] report: $call_dir/analysis/report.html (open it in a browser)" >&2
fi
