#!/usr/bin/env bash
# Builds NCCL from source for the device machine, which ships only torch's NCCL 2.28.9: the
# library for sm_90 only and only the collectives the GPU tests use, so that it builds in minutes
# on two cores and the stripped library (~6 MB) can travel to the device in .deps/.
#
# Usage: bash scripts/build_nccl.sh SOURCE [OUT]
#   SOURCE  a checkout of NVIDIA/nccl at the wanted tag (e.g. v2.30.7-1), read-only is fine
#   OUT     where include/ and lib/ land (default .deps/nccl-<version>), packed as OUT.tar.xz
# NCCL_GENCODE / NCCL_ONLY_FUNCS override the architecture and the collective list.
#
# /usr/local/cuda/include holds NCCL 2.28.9's own headers (nccl.h, nccl_device/), which would
# shadow the tree's generated ones, so the build sees a CUDA_HOME of symlinks without them.
set -euo pipefail
src=${1:?usage: build_nccl.sh SOURCE [OUT]}
src=$(cd "$src" && pwd)
cd "$(dirname "$0")/.."
version=$(sed -n 's/^NCCL_MAJOR *:= *//p;s/^NCCL_MINOR *:= *//p;s/^NCCL_PATCH *:= *//p' "$src/makefiles/version.mk" | paste -sd.)
out=${2:-.deps/nccl-$version}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/epyard-nccl-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

cuda="$work/cuda"
mkdir -p "$cuda/include"
for entry in /usr/local/cuda/*; do
  [ "$(basename "$entry")" = include ] || ln -s "$entry" "$cuda/"
done
for entry in /usr/local/cuda/include/*; do
  case $(basename "$entry") in nccl*) ;; *) ln -s "$entry" "$cuda/include/" ;; esac
done

# The build writes into its tree: build a copy.
cp -a "$src" "$work/src"
echo "epyard: building NCCL $version into $out (log $work/build.log)"
start=$(date +%s)
make -C "$work/src" -j"$(nproc)" src.build CUDA_HOME="$cuda" BUILDDIR="$work/out" \
  NVCC_GENCODE="${NCCL_GENCODE:--gencode=arch=compute_90,code=sm_90}" \
  ONLY_FUNCS="${NCCL_ONLY_FUNCS:-AllReduce Sum f32 * *|AllGather * *|SendRecv|Broadcast * *}" \
  >"$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
rm -rf "$out/include" "$out/lib"
mkdir -p "$out/lib"
cp -a "$work/out/include" "$out/include"
cp "$work/out/lib/libnccl.so.$version" "$out/lib/"
strip --strip-unneeded "$out/lib/libnccl.so.$version"
ln -sf "libnccl.so.$version" "$out/lib/libnccl.so.2"
ln -sf "libnccl.so.2" "$out/lib/libnccl.so"
tar -C "$(dirname "$out")" -cJf "$out.tar.xz" "$(basename "$out")"
echo "epyard: NCCL $version built in $(( $(date +%s) - start )) s: $out ($(du -sh "$out.tar.xz" | cut -f1) packed)"
