# The start every device script shares (source it first): logs under $OUT with log(), the repo
# root as working folder, the device environment (env.sh), and libfabric's headers unpacked from
# the carried Debian .deb (the top-level CMake wants them; the device has only the runtime).
OUT=${OUT:-/tmp/epyard-out}
mkdir -p "$OUT"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source tests/device/env.sh
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
lf=.deps/libfabric
if [ ! -f "$lf/usr/include/rdma/fabric.h" ]; then
  mkdir -p "$lf" && dpkg -x .deps/libfabric-dev_*.deb "$lf" || { log "no libfabric-dev .deb in .deps"; exit 1; }
fi
export EPYARD_LIBFABRIC_INCLUDE=$PWD/$lf/usr/include
