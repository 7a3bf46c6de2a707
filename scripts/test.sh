#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test that runs on a CPU: unit tests, the
# plugin conformance suite over tcp;ofi_rxm (progress in test() and with progress threads),
# the C load test, the EP CPU tests, the torch package's CPU tests (pytest, torch from PyPI in
# .venv), and everything but the Python package again under AddressSanitizer + UBSan.
# GPU tests print SKIPPED where there is no GPU. Set EPYARD_SKIP_SANITIZE=1 to skip the ASan pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
start=$(date +%s)
bash scripts/build.sh
(cd build && ctest --output-on-failure -j 2 --timeout 600)
if [ "${EPYARD_SKIP_SANITIZE:-0}" != 1 ]; then
  BUILD_DIR=build-asan BUILD_TYPE=Debug bash scripts/build.sh -DEPYARD_SANITIZE=ON -DEPYARD_BUILD_PYTHON=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 2 --timeout 900 \
     -E nccl_net_check)
fi
echo "epyard: all tests passed in $(( $(date +%s) - start )) s"
