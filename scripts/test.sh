#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every check and test:
# formatting, clippy, the plugin's unit and integration tests, the trainer's
# tests, the meson build, and the element in a real gst-launch-1.0 pipeline.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seremotion/target}
"$repo/scripts/setup.sh"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (core, plugin, examples, tests, benches)"
cargo clippy -p seremotion-core -p gst-plugin-seremotion --features seremotion-core/plot --all-targets -- -D warnings

step "core and plugin tests"
cargo test -p seremotion-core -p gst-plugin-seremotion --features seremotion-core/plot

step "seremotion-analyze: clippy and tests"
cargo clippy -p seremotion-analyze --all-targets -- -D warnings
cargo test -p seremotion-analyze

step "seremotion-analyze on a local Ray cluster (head + worker) equals a local run"
SEREMOTION_ANALYZE="$CARGO_TARGET_DIR/release/seremotion-analyze" scripts/test_ray.sh

step "trainer: clippy and tests"
cargo clippy -p seremotion-trainer --all-targets -- -D warnings
cargo test -p seremotion-trainer

step "meson build and install"
meson_build="$CARGO_TARGET_DIR/meson-build"
rm -rf "$meson_build" "$CARGO_TARGET_DIR/meson-install"
meson setup "$meson_build" "$repo" >/dev/null
meson compile -C "$meson_build"
DESTDIR="$CARGO_TARGET_DIR/meson-install" meson install -C "$meson_build" >/dev/null
installed=$(find "$CARGO_TARGET_DIR/meson-install" -name libgstseremotion.so | head -n1)
[ -n "$installed" ] || { echo "meson install produced no plugin" >&2; exit 1; }
GST_PLUGIN_PATH=$(dirname "$installed") GST_REGISTRY="$CARGO_TARGET_DIR/meson-registry.bin" \
  gst-inspect-1.0 "$installed" >/dev/null

step "gst-launch-1.0 with the installed plugin (no variables exported)"
sample="$CARGO_TARGET_DIR/test-sample.wav"
espeak-ng -w "$sample" "I can't believe you did that. This is wonderful, thank you so much."
out=$(env -u GST_PLUGIN_PATH -u SEREMOTION_ORT_LIB gst-launch-1.0 -m filesrc location="$sample" \
  ! decodebin ! audioconvert ! seremotion ! fakesink 2>&1)
echo "$out" | grep -E 'seremotion(-summary)?,' | head -n 5
windows=$(echo "$out" | grep -c 'element): seremotion, ' || true)
summaries=$(echo "$out" | grep -c 'element): seremotion-summary, ' || true)
[ "$windows" -ge 2 ] && [ "$summaries" -eq 1 ] || {
  echo "$out" >&2
  echo "expected >= 2 seremotion messages and one summary, got $windows and $summaries" >&2
  exit 1
}

step "all checks passed"
