#!/usr/bin/env bash
# Installs what epyard needs to build and test on Debian 12, skipping what is already there.
set -euo pipefail
need=()
for pkg in cmake ninja-build g++ pkg-config libfabric-dev libibverbs-dev libhwloc-dev googletest \
           libgtest-dev python3 python3-dev python3-venv; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "epyard: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Torch from PyPI (the same version as the device machine) in .venv, for the Python package and
# its tests. EPYARD_SKIP_TORCH=1 skips it (the package is then not built).
if [ "${EPYARD_SKIP_TORCH:-0}" != 1 ]; then
  cd "$(dirname "$0")/.."
  [ -x .venv/bin/python ] || python3 -m venv .venv
  if ! .venv/bin/python -c "import torch, pytest" 2>/dev/null; then
    echo "epyard: installing torch ${EPYARD_TORCH_VERSION:-2.11.0} and pytest into .venv (a few GB)"
    .venv/bin/pip install -q --disable-pip-version-check "torch==${EPYARD_TORCH_VERSION:-2.11.0}" pytest
  fi
fi

# NCCL 2.30.7 (torch 2.15's) from PyPI's wheel, unpacked into .deps/: CI builds and tests the EP
# module and the plugin against its headers and library too. EPYARD_SKIP_NCCL230=1 skips it.
if [ "${EPYARD_SKIP_NCCL230:-0}" != 1 ]; then
  cd "$(dirname "$0")/.."
  wheel_dir=.deps/nccl-pypi-2.30.7
  if [ ! -f "$wheel_dir/nvidia/nccl/include/nccl.h" ]; then
    echo "epyard: fetching nvidia-nccl-cu13==2.30.7 (headers and library, ~220 MB) into $wheel_dir"
    pip=(python3 -m pip)
    [ -x .venv/bin/pip ] && pip=(.venv/bin/pip)
    rm -rf "$wheel_dir" /tmp/epyard-nccl-wheel && mkdir -p "$wheel_dir"
    "${pip[@]}" download -q --disable-pip-version-check --no-deps -d /tmp/epyard-nccl-wheel \
      nvidia-nccl-cu13==2.30.7
    python3 -m zipfile -e /tmp/epyard-nccl-wheel/nvidia_nccl_cu13-2.30.7-*.whl "$wheel_dir"
    rm -rf /tmp/epyard-nccl-wheel
  fi
fi
