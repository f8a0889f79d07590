#!/usr/bin/env bash
# Speed and memory of seremotion against a Python reference, side by side.
#
#   scripts/bench_compare.sh                  # 10 s, 10 min and 2 h recordings (the 2 h Python run takes minutes)
#   LENGTHS="10 600" scripts/bench_compare.sh # quicker
#
# On the same speech recordings (espeak-ng sentences looped with sox; generated
# once into $BENCH_DIR, never committed), in the same run, times
#   (a) gst-launch-1.0 filesrc ! decodebin ! audioconvert ! seremotion ! fakesink   (default model)
#   (b) scripts/reference_pipeline.py: librosa load + ZCR/RMS/20 MFCC + a Keras-style
#       Conv1D network in onnxruntime, one thread, one 2.5 s window at a time
# each pinned to one core (taskset), and prints audio seconds, CPU seconds (user +
# system, from /usr/bin/time), real-time factor (CPU / audio), peak RSS, and the
# ratio. Each figure is the median of REPEATS runs (default 3; 1 for recordings
# longer than 20 min). Also:
#   * the element on a stereo 8 kHz recording in per-channel mode;
#   * INSTANCES (default 100) pipelines in one process (seremotion-analyze
#     --jobs INSTANCES over INSTANCES links to the 10 min recording): total peak RSS, and the slowest
#     pipeline's wall-clock real-time factor (< 1 = every one kept real time).
#
# Environment: LENGTHS (seconds, default "10 600 7200"), REFERENCE_LENGTHS (the lengths the
# Python reference also runs on, default all of LENGTHS), REPEATS, INSTANCES (0 = skip),
# MODEL (a seremotion model file for (a); default: the embedded model),
# BENCH_DIR (default ~/.cache/seremotion/bench), BENCH_VENV (default
# ~/.cache/seremotion/bench-venv), CORE (default: the last core),
# SKIP_SETUP=1 (do not run scripts/setup.sh first), PLUGIN_DIR (time the libgstseremotion.so
# in this folder instead of the installed one, e.g. a build that is not installed).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench_dir=${BENCH_DIR:-$HOME/.cache/seremotion/bench}
venv=${BENCH_VENV:-$HOME/.cache/seremotion/bench-venv}
lengths=${LENGTHS:-"10 600 7200"}
ref_lengths=${REFERENCE_LENGTHS:-$lengths}
instances=${INSTANCES:-100}
core=${CORE:-$(($(nproc) - 1))}
model=${MODEL:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seremotion/target}

say() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bench] error:\033[0m %s\n' "$*" >&2; exit 1; }

[ -n "${SKIP_SETUP:-}" ] || "$repo/scripts/setup.sh"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v espeak-ng >/dev/null && command -v sox >/dev/null || die "needs espeak-ng and sox (scripts/setup.sh installs them)"
[ -x /usr/bin/time ] || die "needs GNU time: apt-get install time"

# --- Python reference environment -------------------------------------------------
if ! "$venv/bin/python" -c 'import librosa, onnx, onnxruntime, numpy' 2>/dev/null; then
  say "creating the reference's virtualenv $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check librosa numpy onnx "onnxruntime==1.32.0"
fi
mkdir -p "$bench_dir"
"$venv/bin/python" "$repo/scripts/make_bench_models.py" "$bench_dir"
ref_model="$bench_dir/reference_keras_conv1d.onnx"

# --- Recordings ----------------------------------------------------------------------
base="$bench_dir/speech_base.wav"
if [ ! -f "$base" ]; then
  say "synthesising speech with espeak-ng"
  tmp=$(mktemp -d)
  i=0
  while read -r voice speed pitch gain text; do
    espeak-ng -v "$voice" -s "$speed" -p "$pitch" -w "$tmp/raw$i.wav" "$text"
    sox "$tmp/raw$i.wav" -r 16000 -c 1 -b 16 "$tmp/s$i.wav" gain "$gain" pad 0 0.6
    i=$((i + 1))
  done <<'EOF'
en-us 160 50 -3 I have been waiting on this line for forty minutes and nobody has called me back.
en-gb 140 40 -9 Thank you so much, that is exactly what I needed, you have been really helpful today.
en-us 120 30 -15 I am not sure what happened to the order, it was supposed to arrive last week.
en-gb 190 70 -1 This is completely unacceptable, I want to speak to a manager right now.
en-us 150 60 -6 Could you please read me the reference number again, slowly this time.
en-gb 110 35 -18 It has been a difficult month, and honestly I just want this to be sorted out.
en-us 175 80 -4 Great news, the refund went through this morning, thanks for checking.
en-gb 165 45 -8 Let me check the account details and I will come back to you in a minute.
EOF
  sox "$tmp"/s*.wav "$tmp/one.wav"
  # ~60 s: the sentences three times over, then a few seconds of silence.
  sox "$tmp/one.wav" "$tmp/three.wav" repeat 2
  sox "$tmp/three.wav" "$base" pad 0 3
  rm -rf "$tmp"
fi
base_len=$(soxi -D "$base")
make_length() { # seconds -> path of a mono 16 kHz recording of that length
  local out="$bench_dir/speech_$1s.wav"
  if [ ! -f "$out" ]; then
    local reps
    reps=$(python3 -c "import math; print(max(0, math.ceil($1 / $base_len) - 1))")
    sox "$base" "$out.tmp.wav" repeat "$reps" trim 0 "$1"
    mv "$out.tmp.wav" "$out"
  fi
  echo "$out"
}
make_stereo() { # seconds -> stereo 8 kHz recording, a different speaker per channel
  local out="$bench_dir/call_stereo8k_$1s.wav" mono
  mono=$(make_length "$1")
  if [ ! -f "$out" ]; then
    sox "$mono" "$out.a.wav" rate 8000
    sox "$mono" "$out.b.wav" rate 8000 reverse
    sox -M "$out.a.wav" "$out.b.wav" "$out.tmp.wav"
    rm -f "$out.a.wav" "$out.b.wav"
    mv "$out.tmp.wav" "$out"
  fi
  echo "$out"
}

# --- Measurement -----------------------------------------------------------------------
# run_timed OUT_PREFIX CMD... : one run pinned to $core; appends "cpu_s rss_kb wall_s" to OUT_PREFIX.runs
run_timed() {
  local prefix=$1
  shift
  /usr/bin/time -f '%U %S %M %e' -o "$prefix.time" taskset -c "$core" "$@" >"$prefix.out" 2>"$prefix.err" ||
    { cat "$prefix.err" >&2; die "failed: $*"; }
  awk '{ printf "%.3f %d %.3f\n", $1 + $2, $3, $4 }' "$prefix.time" >>"$prefix.runs"
}
median() { # column of $1.runs -> median
  sort -g -k"$2" "$1.runs" | awk -v c="$2" '{ v[NR] = $c } END { m = int((NR + 1) / 2); print v[m] }'
}

element_cmd() { # file [per-channel]
  local props=()
  [ -n "$model" ] && props+=("model-path=$model")
  [ "${2:-}" = per-channel ] && props+=("channel-mode=per-channel")
  echo gst-launch-1.0 -q filesrc "location=$1" ! decodebin ! audioconvert ! seremotion "${props[@]}" ! fakesink
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${PLUGIN_DIR:-}" ]; then
  # Only GStreamer's own plugins plus PLUGIN_DIR: the installed copy is not scanned.
  export GST_PLUGIN_SYSTEM_PATH_1_0=$(pkg-config --variable=pluginsdir gstreamer-1.0)
  export GST_PLUGIN_PATH_1_0=$PLUGIN_DIR GST_REGISTRY_1_0=$work/registry.bin
fi
gst-inspect-1.0 seremotion >/dev/null 2>&1 || die "GStreamer cannot find the seremotion element"
rows=()
row() { rows+=("$(printf '%-34s %10s %9s %9s %10s %9s' "$@")"); }
row "run" "audio s" "CPU s" "wall s" "RTF (CPU)" "peak MB"

for len in $lengths; do
  file=$(make_length "$len")
  audio=$(soxi -D "$file")
  repeats=${REPEATS:-$([ "${len%.*}" -gt 1200 ] && echo 1 || echo 3)}
  say "recording of ${len} s: $repeats run(s) of each, pinned to core $core"
  for r in $(seq "$repeats"); do
    # shellcheck disable=SC2046
    run_timed "$work/el$len" $(element_cmd "$file")
    if [[ " $ref_lengths " == *" $len "* ]]; then
      run_timed "$work/py$len" "$venv/bin/python" "$repo/scripts/reference_pipeline.py" "$ref_model" "$file"
    fi
  done
  whos=(el)
  [ -f "$work/py$len.runs" ] && whos+=(py)
  for who in "${whos[@]}"; do
    cpu=$(median "$work/$who$len" 1) rss=$(median "$work/$who$len" 2) wall=$(median "$work/$who$len" 3)
    name=$([ $who = el ] && echo "seremotion ${len}s" || echo "python reference ${len}s")
    row "$name" "$audio" "$cpu" "$wall" "$(awk -v c="$cpu" -v a="$audio" 'BEGIN { printf "%.5f", c / a }')" \
      "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
  done
  if [ -f "$work/py$len.runs" ]; then
    el_cpu=$(median "$work/el$len" 1) py_cpu=$(median "$work/py$len" 1)
    row "  ratio python/seremotion (CPU)" "" "$(awk -v p="$py_cpu" -v e="$el_cpu" 'BEGIN { printf "%.1fx", p / e }')" "" "" ""
  fi
done

# Per-channel stereo 8 kHz (the element only).
st_len=$(echo "$lengths" | awk '{ print ($2 != "" ? $2 : $1) }')
stereo=$(make_stereo "$st_len")
audio=$(soxi -D "$stereo")
for r in $(seq "${REPEATS:-3}"); do
  # shellcheck disable=SC2046
  run_timed "$work/st" $(element_cmd "$stereo" per-channel)
done
cpu=$(median "$work/st" 1)
row "seremotion stereo 8k per-channel" "$audio" "$cpu" "$(median "$work/st" 3)" \
  "$(awk -v c="$cpu" -v a="$audio" 'BEGIN { printf "%.5f", c / a }')" \
  "$(awk -v k="$(median "$work/st" 2)" 'BEGIN { printf "%.1f", k / 1024 }')"

# Many pipelines in one process.
if [ "$instances" -gt 0 ]; then
  say "building seremotion-analyze"
  cargo build -q --release --manifest-path "$repo/Cargo.toml" -p seremotion-analyze --bin seremotion-analyze
  analyzer="$CARGO_TARGET_DIR/release/seremotion-analyze"
  file=$(make_length "$st_len")
  # The analyser takes each file once: give it as many names.
  mkdir -p "$work/many"
  list=()
  for i in $(seq "$instances"); do ln -sf "$file" "$work/many/$i.wav"; list+=("$work/many/$i.wav"); done
  say "$instances pipelines in one process over $(soxi -D "$file") s each (both cores)"
  /usr/bin/time -f '%U %S %M %e' -o "$work/many.time" "$analyzer" --jobs "$instances" --out "$work/many-out" "${list[@]}" \
    >"$work/many.out" 2>"$work/many.err" || { cat "$work/many.err" >&2; die "seremotion-analyze failed"; }
  read -r u s rss wall <"$work/many.time"
  slowest=$(grep -o 'slowest file real-time factor [0-9.]*' "$work/many.err" | awk '{ print $NF }')
  audio_total=$(awk -v a="$(soxi -D "$file")" -v n="$instances" 'BEGIN { print a * n }')
  row "$instances pipelines, one process" "$audio_total" "$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')" "$wall" \
    "$(awk -v u="$u" -v s="$s" -v a="$audio_total" 'BEGIN { printf "%.5f", (u + s) / a }')" \
    "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
  rows+=("  slowest pipeline: wall-clock real-time factor ${slowest:-?} (< 1: every one kept real time)")
fi

echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
echo "model: ${model:-embedded default}; element and reference each pinned to core $core; medians of runs; RTF = CPU s / audio s"
printf '%s\n' "${rows[@]}"
