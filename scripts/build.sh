#!/usr/bin/env bash
# Configures and builds into ${BUILD_DIR:-build} (extra CMake arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
jobs=$(nproc)
python=()
[ -x .venv/bin/python ] && python=(-DPython3_EXECUTABLE="$PWD/.venv/bin/python")  # torch lives there
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "${python[@]}" "$@" >/dev/null
ninja -C "$build" -j "$jobs"
