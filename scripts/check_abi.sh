#!/usr/bin/env bash
# Compares epyard's declarations of NCCL's internal plugin ABI structs (plugin/abi/, which NCCL
# does not install) with NCCL's own, field offset by field offset, for one NCCL source tree.
# Usage: bash scripts/check_abi.sh NCCL_SOURCE [NCCL_INCLUDE]
#   NCCL_SOURCE   a checkout of NVIDIA/nccl at a tag (`git archive v2.28.9-1 src/include`
#                 unpacked is enough; fetch brings the repository)
#   NCCL_INCLUDE  that release's built nccl.h (the tree has only nccl.h.in; default: CUDA's
#                 include folder, which holds 2.28.9's; for 2.30.x pass .deps/nccl-2.30.7/include)
# Checked: what the tree has of ncclGin_v11_t (2.28.7 - 2.29.x), ncclNet_v12_t with its
# properties, ncclGin_v13_t and ncclRma_v14_t (2.30.x), and the signal and MR-flag constants.
# Exits non-zero, printing the differences, when a layout differs.
set -euo pipefail
src=${1:?usage: check_abi.sh NCCL_SOURCE}
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/epyard-abi.XXXXXX)
trap 'rm -rf "$work"' EXIT
cuda_include=${CUDA_HOME:-/usr/local/cuda}/include
nccl_include=${2:-$cuda_include}
has=()
tree_has() { [ -f "$src/src/include/plugin/$1" ]; }
if tree_has net/net_v11.h && grep -q ncclGin_v11_t "$src/src/include/plugin/net/net_v11.h"; then has+=(-DEPYARD_ABI_GIN_V11); fi
if tree_has rma/rma_v14.h; then has+=(-DEPYARD_ABI_RMA_V14); fi
if tree_has gin/gin_v13.h; then has+=(-DEPYARD_ABI_GIN_V13); fi
if tree_has net/net_v12.h; then has+=(-DEPYARD_ABI_NET_V12); fi
[ ${#has[@]} -gt 0 ] || { echo "epyard: $src has neither GIN v11 nor RMA v14" >&2; exit 2; }
c++ -std=c++17 "${has[@]}" -I plugin tests/abi/plugin_layout.cc -o "$work/ours"
c++ -std=c++17 "${has[@]}" -DNCCL_SOURCE_HEADERS -I "$src/src/include" -I "$src/src/include/plugin" \
  -I "$nccl_include" -I "$cuda_include" tests/abi/plugin_layout.cc -o "$work/theirs"
"$work/ours" >"$work/ours.txt"
"$work/theirs" >"$work/theirs.txt"
if diff "$work/ours.txt" "$work/theirs.txt"; then
  echo "epyard: ABI layouts match NCCL's at $src (${has[*]#-DEPYARD_ABI_}: $(wc -l <"$work/ours.txt") fields and constants)"
else
  echo "epyard: ABI layouts differ from NCCL's at $src (left: epyard, right: NCCL)" >&2
  exit 1
fi
