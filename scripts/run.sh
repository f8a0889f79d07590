#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the seremotion element with
# the embedded default model over a recording and prints one line per result.
#
#   scripts/run.sh                 # a spoken sample made with espeak-ng
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
