#!/usr/bin/env bash
# Compares epyard's declarations of NCCL's internal plugin ABI structs (plugin/abi/, which NCCL
# does not install) with NCCL's own, field offset by field offset, for one NCCL source tree.
# Usage: bash scripts/check_abi.sh NCCL_SOURCE   (a checkout of NVIDIA/nccl at a tag that has GIN
# v11, 2.28.7 - 2.29.x, e.g. `git archive v2.28.9-1 src/include` unpacked; fetch brings the
# repository). Checked so far: ncclGin_v11_t and the GIN signal and MR-flag constants.
# Exits non-zero, printing the differences, when a layout differs.
set -euo pipefail
src=${1:?usage: check_abi.sh NCCL_SOURCE}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/epyard-abi.XXXXXX)
trap 'rm -rf "$work"' EXIT
cuda_include=${CUDA_HOME:-/usr/local/cuda}/include
c++ -std=c++17 -I plugin tests/abi/gin_layout.cc -o "$work/ours"
c++ -std=c++17 -DNCCL_SOURCE_HEADERS -I "$src/src/include" -I "$cuda_include" tests/abi/gin_layout.cc -o "$work/theirs"
"$work/ours" >"$work/ours.txt"
"$work/theirs" >"$work/theirs.txt"
if diff "$work/ours.txt" "$work/theirs.txt"; then
  echo "epyard: ABI layouts match NCCL's at $src ($(wc -l <"$work/ours.txt") fields and constants)"
else
  echo "epyard: ABI layouts differ from NCCL's at $src (left: epyard, right: NCCL)" >&2
  exit 1
fi
