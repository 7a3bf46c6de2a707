#!/usr/bin/env bash
# Installs what epyard needs to build and test on Debian 12, skipping what is already there.
set -euo pipefail
need=()
for pkg in cmake ninja-build g++ pkg-config libfabric-dev libibverbs-dev libhwloc-dev googletest \
           libgtest-dev python3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "epyard: installing ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
