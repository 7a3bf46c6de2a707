#!/usr/bin/env bash
# Everything that runs on one GPU, in one device call: builds (in parallel where they do not
# share a folder), then one after the other on the GPU:
#   ep      the EP GPU suite on NCCL 2.28.9 (torch's): virtual ranks 2, 4, 8 on the one GPU, all
#           cases; SASS load counts
#   net     NCCL all_reduce / all-to-all with 4 and 2 ranks on the GPU as separate hosts
#           (NCCL_HOSTID), over NCCL's Socket and over the epyard plugin
#   c10d    the torch backend's collective checks on 4 and 2 ranks, Socket and epyard, and a
#           dead rank
#   ep230   the EP suite built against NCCL 2.30.7 (.deps/nccl-2.30.7.tar.xz from
#           scripts/build_nccl.sh): virtual ranks 2, 4, 8; then processes sharing the GPU in one
#           NCCL communicator (NCCL_MULTI_RANK_GPU_ENABLE=1), which says whether such ranks get
#           one LSA team with symmetric memory
#   san     compute-sanitizer memcheck and racecheck of the EP suite on 2 and 4 virtual ranks
#           (last: the slowest step, and the one a call's time limit should cut first)
# Usage (inside a `device` run, repo root): bash tests/device/one_gpu.sh [steps...] (default all)
# Carry .deps (the libfabric-dev .deb, nccl-2.30.7.tar.xz, sass-before/ and sass-after/).
# Logs and summary.txt in $OUT.
set -u
source "$(dirname "$0")/common.sh"
steps=" ${*:-ep net c10d ep230 san} "
t0=$(date +%s)
here=$PWD/tests/device
nccl230=.deps/nccl-2.30.7.tar.xz
# Builds that share no folder with the first GPU step start now.
[[ $steps == *" ep230 "* ]] && { EP_NCCL=$nccl230 OUT=$OUT/b230 bash "$here/ep_gpu.sh" build >/dev/null 2>&1 & }
[[ $steps == *" c10d "* ]] && { OUT=$OUT/bpy bash "$here/c10d_gpu.sh" build >/dev/null 2>&1 & }
if [[ $steps == *" ep "* ]]; then
  TEST_TIMEOUT=${TEST_TIMEOUT:-300} bash "$here/ep_gpu.sh" test sass
  log "ep done at $(( $(date +%s) - t0 )) s"
fi
if [[ $steps == *" net "* ]]; then
  BYTES=${BYTES:-64M} ITERS=${ITERS:-3} NET_RANKS=${NET_RANKS:-"4 2"} bash "$here/net_plugin_gpu.sh" socket ep
  log "net done at $(( $(date +%s) - t0 )) s"
fi
wait
if [[ $steps == *" c10d "* ]]; then
  C10D_TIMEOUT=${C10D_TIMEOUT:-150} bash "$here/c10d_gpu.sh" test
  log "c10d done at $(( $(date +%s) - t0 )) s"
fi
if [[ $steps == *" ep230 "* ]]; then
  EP_NCCL=$nccl230 TEST_TIMEOUT=${TEST_TIMEOUT:-300} bash "$here/ep_gpu.sh" test
  EP_NCCL=$nccl230 TEST_MODE=shared-gpu TEST_RANKS=${SHARED_RANKS:-2} TEST_TIMEOUT=120 NCCL_DEBUG=WARN \
    bash "$here/ep_gpu.sh" test:basic
  log "ep230 done at $(( $(date +%s) - t0 )) s"
fi
if [[ $steps == *" san "* ]]; then
  TEST_TIMEOUT=${TEST_TIMEOUT:-300} bash "$here/ep_gpu.sh" sanitize
  log "san done at $(( $(date +%s) - t0 )) s"
fi
log "one_gpu.sh done in $(( $(date +%s) - t0 )) s"
