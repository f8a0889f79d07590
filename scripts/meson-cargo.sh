#!/bin/sh
# meson custom_target helper: runs cargo, then copies the built plugin to meson's output.
# An exported CARGO_TARGET_DIR wins over meson's build directory, so builds are shared.
set -e
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$1}"
profile=$2; output=$3; shift 3
"$@"
cp "$CARGO_TARGET_DIR/$profile/libgstseremotion.so" "$output"
