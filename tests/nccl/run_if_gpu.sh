#!/bin/sh
# Runs epyard_nccl_check on every GPU of this host, or skips (exit 0) where there is none.
# usage: run_if_gpu.sh PATH/TO/epyard_nccl_check [more options for it]
# Set NCCL_NET_PLUGIN=epyard (and LD_LIBRARY_PATH) in the environment to check the plugin.
set -u
if [ $# -lt 1 ]; then
  echo "usage: $0 PATH/TO/epyard_nccl_check [options]" >&2
  exit 64
fi
bin=$1
shift

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "SKIPPED: no GPU (nvidia-smi not found)"
  exit 0
fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
# CUDA_VISIBLE_DEVICES narrows what the program sees (set but empty: none).
if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
  visible=$(printf '%s' "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .)
  if [ "$visible" -lt "$gpus" ]; then gpus=$visible; fi
fi
if [ "$gpus" -eq 0 ]; then
  echo "SKIPPED: no GPU (nvidia-smi lists none)"
  exit 0
fi

echo "running on $gpus GPU(s): $bin --nranks $gpus --bytes 64M --iters 5 $*"
exec "$bin" --nranks "$gpus" --bytes 64M --iters 5 "$@"
