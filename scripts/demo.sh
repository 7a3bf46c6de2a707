#!/usr/bin/env bash
# The main job: two local processes move data through the plugin (NCCL's ABI, libfabric's
# tcp;ofi_rxm provider on loopback) and print a perf table beside the raw transport.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
export EPYARD_OFI_PROVIDER=${EPYARD_OFI_PROVIDER:-"tcp;ofi_rxm"} FI_TCP_IFACE=${FI_TCP_IFACE:-lo}
./build/perf/epyard_net_perf --raw -b 8 -e 64M "$@"
