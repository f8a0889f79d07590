#!/usr/bin/env bash
# Installs everything seremotion needs on Debian 12, builds the plugin and
# makes it visible to gst-inspect-1.0 / gst-launch-1.0. Idempotent: a second
# run only rebuilds what changed.
#
#   scripts/setup.sh            # release build (what the README's commands use)
#   PROFILE=debug scripts/setup.sh
#
# Environment:
#   CARGO_TARGET_DIR   build directory (default: ~/.cache/seremotion/target, reused between runs)
#   SEREMOTION_VENV    virtualenv for ONNX Runtime and Ray (default: <repo>/.venv)
#   SEREMOTION_BIN_DIR where seremotion-analyze goes (default: /usr/local/bin as root, else ~/.cargo/bin)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-release}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/seremotion/target}
venv=${SEREMOTION_VENV:-$repo/.venv}
ort_version="1.32.0"
# Ray for scripts/analyze_on_ray.sh; a cluster's nodes must run the same version.
ray_version="2.60.0"
plugin_dir="$HOME/.local/share/gstreamer-1.0/plugins"
ort_dir="$HOME/.local/lib/seremotion"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# --- Debian packages ---------------------------------------------------------
packages=(
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav
  pkg-config espeak-ng sox meson ninja-build python3-venv
  chromium python3-gi gir1.2-gstreamer-1.0
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Rust --------------------------------------------------------------------
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo >/dev/null || die "cargo not found: install Rust >= 1.95 with rustup (https://rustup.rs)"

# --- ONNX Runtime (shared library from the onnxruntime wheel) -----------------
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtualenv $venv"
  "$python" -m venv "$venv"
fi
ort_lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ort_version" 2>/dev/null | head -n1 || true)
if [ -z "$ort_lib" ]; then
  say "installing onnxruntime $ort_version into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "onnxruntime==$ort_version"
  ort_lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so."$ort_version" | head -n1)
fi
[ -f "$ort_lib" ] || die "libonnxruntime.so.$ort_version not found in $venv"
# A copy outside the clone keeps an installed plugin working if the clone moves.
# `install` writes a new file rather than over the old one, which pipelines
# that are running may have mapped.
mkdir -p "$ort_dir"
cmp -s "$ort_lib" "$ort_dir/$(basename "$ort_lib")" || install -m 0755 "$ort_lib" "$ort_dir/"

if ! "$venv/bin/python" -c "import sys, ray; sys.exit(ray.__version__ != '$ray_version')" 2>/dev/null; then
  say "installing ray $ray_version into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "ray==$ray_version"
fi

# --- Build and install the plugin ----------------------------------------------
say "building the plugin ($profile)"
cargo_flags=(-p gst-plugin-seremotion --lib)
[ "$profile" = release ] && cargo_flags+=(--release)
# Baked into the plugin as the first place to look for ONNX Runtime.
SEREMOTION_ORT_LIB_DEFAULT="$ort_dir/$(basename "$ort_lib")" \
  cargo build --manifest-path "$repo/Cargo.toml" "${cargo_flags[@]}"
so="$CARGO_TARGET_DIR/$profile/libgstseremotion.so"
[ -f "$so" ] || die "build produced no $so"
mkdir -p "$plugin_dir"
cp "$so" "$plugin_dir/libgstseremotion.so.tmp" && mv "$plugin_dir/libgstseremotion.so.tmp" "$plugin_dir/libgstseremotion.so"

# Fresh registry entry: GStreamer caches plugin scans.
rm -f "$HOME/.cache/gstreamer-1.0/registry."*.bin
gst-inspect-1.0 seremotion >/dev/null 2>&1 || {
  gst-inspect-1.0 seremotion || true
  die "GStreamer cannot load $plugin_dir/libgstseremotion.so"
}

# --- seremotion-analyze (links the element in: works without the plugin) ------
if [ -n "${SEREMOTION_BIN_DIR:-}" ]; then
  bin_dir=$SEREMOTION_BIN_DIR
elif [ "$(id -u)" -eq 0 ]; then
  bin_dir=/usr/local/bin
else
  bin_dir=$HOME/.cargo/bin
fi
say "building seremotion-analyze ($profile)"
analyze_flags=(-p seremotion-analyze --bin seremotion-analyze)
[ "$profile" = release ] && analyze_flags+=(--release)
SEREMOTION_ORT_LIB_DEFAULT="$ort_dir/$(basename "$ort_lib")" \
  cargo build --manifest-path "$repo/Cargo.toml" "${analyze_flags[@]}"
mkdir -p "$bin_dir"
# Through a new file and a rename: a running batch keeps its binary.
install -m 0755 "$CARGO_TARGET_DIR/$profile/seremotion-analyze" "$bin_dir/.seremotion-analyze.tmp"
mv "$bin_dir/.seremotion-analyze.tmp" "$bin_dir/seremotion-analyze"
command -v seremotion-analyze >/dev/null ||
  say "note: $bin_dir is not on PATH; run $bin_dir/seremotion-analyze or add it to PATH"
say "seremotion installed in $plugin_dir (ONNX Runtime: $ort_dir), seremotion-analyze in $bin_dir"
