#!/usr/bin/env bash
# Builds libepyard.so, the EP GPU tests and epyard_ep_perf on the device machine and runs them.
# Usage (inside a `device` run, repo root): bash tests/device/ep_gpu.sh [steps...]
#   build              only build (every step builds first; e.g. in the background)
#   test[:case,case]   epyard_ep_gpu_test on all GPUs (TEST_RANKS=2 for two ranks as well)
#   sanitize           compute-sanitizer memcheck and racecheck on a small case, 2 ranks
#   perf               epyard_ep_perf at the target shape and a sweep (PERF_ARGS to override;
#                      several runs separated by ';')
#   probe              epyard_nvlink_probe: NVLink store bandwidth, all GPUs sending at once
#                      (PROBE_ARGS to override; several runs separated by ';')
# EP_TRACE=ON builds the kernels with phase timing (printed at group destruction); BUILD_DIR
# (default build-dev) lets a traced and a plain build live side by side (a build of a kernel
# variant too: CUDAFLAGS=-DSOME_SWITCH on its first configure).
# Carry .deps (Debian's libfabric-dev .deb; the top-level CMake wants libfabric headers).
# Logs and a summary land in $OUT (or /tmp/epyard-out).
set -u
source "$(dirname "$0")/common.sh"
[ -f "$EPYARD_NCCL_HOME/include/nccl_device.h" ] || log "WARNING: NCCL's nccl_device.h is missing under $EPYARD_NCCL_HOME/include"
log "GPUs: $(nvidia-smi -L | wc -l); $(nvidia-smi -L | head -1)"
start=$(date +%s)
bdir=${BUILD_DIR:-build-dev}
blog=$OUT/build-$(basename "$bdir").log
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPYARD_WERROR=OFF \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda \
  -DEPYARD_EP_TRACE=${EP_TRACE:-OFF} >"$blog" 2>&1 &&
  ninja -C "$bdir" epyard epyard_ep_gpu_test epyard_ep_perf epyard_nvlink_probe >>"$blog" 2>&1 ||
  { log "build failed (see $(basename "$blog"))"; grep -E "error|FAILED" -A3 "$blog" | head -40; exit 1; }
log "build ok ($(( $(date +%s) - start )) s)"
ngpu=$(nvidia-smi -L | wc -l)
bin=./$bdir/tests/ep/gpu/epyard_ep_gpu_test

for step in ${*:-test perf}; do
  case $step in
    build) ;;
    test*)
      cases=${step#test}; cases=${cases#:}
      for n in ${TEST_RANKS:-$ngpu}; do
        log "epyard_ep_gpu_test --nranks $n ${cases:+--cases $cases}"
        s=$(date +%s)
        timeout ${TEST_TIMEOUT:-400} $bin --nranks "$n" ${cases:+--cases "$cases"} >"$OUT/test_r$n.log" 2>&1
        rc=$?
        grep -a -E "PASS|FAIL|ok:|EP GPU tests|launch" "$OUT/test_r$n.log" | head -60 | tee -a "$OUT/summary.txt"
        log "exit $rc after $(( $(date +%s) - s )) s"
      done ;;
    sanitize)
      for tool in memcheck racecheck; do
        log "compute-sanitizer --tool $tool (2 ranks, case basic)"
        # NCCL probes kernels for other architectures at init: API errors are not ours, so
        # only memory and race errors are reported.
        timeout 600 /usr/local/cuda/bin/compute-sanitizer --tool $tool --target-processes all \
          --report-api-errors no --error-exitcode 9 $bin --nranks 2 --cases basic >"$OUT/sanitize_$tool.log" 2>&1
        rc=$?
        grep -a -E "SUMMARY|PASS|FAIL|Error|at .*\.cuh?:[0-9]+" "$OUT/sanitize_$tool.log" | sort | uniq -c | head -30 | tee -a "$OUT/summary.txt"
        log "$tool exit $rc"
      done ;;
    perf)
      log "epyard_ep_perf ${PERF_ARGS:-(target shape, FP8 and BF16, token sweep)}"
      if [ -n "${PERF_ARGS:-}" ]; then
        IFS=';' read -ra runs <<<"$PERF_ARGS"
        for args in "${runs[@]}"; do
          log "epyard_ep_perf $args"
          timeout 300 ./$bdir/perf/epyard_ep_perf $args 2>&1 | tee -a "$OUT/summary.txt"
        done
      else
        timeout 300 ./$bdir/perf/epyard_ep_perf --tokens 1,32,64,128,256 2>&1 | tee -a "$OUT/summary.txt"
        timeout 300 ./$bdir/perf/epyard_ep_perf --bf16 2>&1 | tee -a "$OUT/summary.txt"
        timeout 300 ./$bdir/perf/epyard_ep_perf --rank-major 2>&1 | tee -a "$OUT/summary.txt"
      fi ;;
    probe)
      IFS=';' read -ra runs <<<"${PROBE_ARGS:- }"
      for args in "${runs[@]}"; do
        log "epyard_nvlink_probe $args"
        timeout 300 ./$bdir/perf/epyard_nvlink_probe $args 2>&1 | tee -a "$OUT/summary.txt"
      done ;;
    *) log "unknown step '$step' (build, test[:cases], sanitize, perf, probe)"; exit 2 ;;
  esac
done
log done
