#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test that runs on a CPU: unit tests, the
# plugin conformance suite over tcp;ofi_rxm (progress in test() and with progress threads),
# the C load test, the EP CPU tests, the torch package's CPU tests (pytest, torch from PyPI in
# .venv), and everything but the Python package again under AddressSanitizer + UBSan.
# The main build (NCCL 2.28.9) is tested again against NCCL 2.30.7's headers and library.
# GPU tests print SKIPPED where there is no GPU. Set EPYARD_SKIP_SANITIZE=1 to skip the ASan pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
start=$(date +%s)
# NCCL 2.28.9 (torch 2.11's, or the system's) and NCCL 2.30.7 (torch 2.15's, from PyPI's wheel):
# each build is tested, and each refuses the other release's library at group creation.
nccl230=$PWD/.deps/nccl-pypi-2.30.7/nvidia/nccl
other=()
[ -f "$nccl230/include/nccl.h" ] && other=(-DEPYARD_TEST_OTHER_NCCL_LIB=$nccl230/lib -DEPYARD_TEST_OTHER_NCCL_VERSION=2.30.7)
bash scripts/build.sh "${other[@]}"
(cd build && ctest --output-on-failure -j 2 --timeout 600)
if [ -f "$nccl230/include/nccl.h" ]; then
  nccl228=$(dirname "$(ldd build/ep/libepyard.so | awk '/libnccl/ {print $3; exit}')")
  EPYARD_NCCL_HOME=$nccl230 BUILD_DIR=build-nccl230 bash scripts/build.sh -DEPYARD_BUILD_PYTHON=OFF \
    -DEPYARD_TEST_OTHER_NCCL_LIB=$nccl228 -DEPYARD_TEST_OTHER_NCCL_VERSION=$(cat build/nccl_version.txt)
  (cd build-nccl230 && ctest --output-on-failure -j 2 --timeout 600)
fi
if [ "${EPYARD_SKIP_SANITIZE:-0}" != 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DEPYARD_SANITIZE=ON -DEPYARD_BUILD_PYTHON=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 --timeout 900 \
     -E nccl_net_check)
fi
echo "epyard: all tests passed in $(( $(date +%s) - start )) s"
