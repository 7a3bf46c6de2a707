#!/usr/bin/env bash
# Builds libepyard.so, the EP GPU tests and epyard_ep_perf on the device machine and runs them.
# Usage (inside a `device` run, repo root): bash tests/device/ep_gpu.sh [steps...]
#   build              only build (every step builds first; e.g. in the background)
#   test[:case,case]   epyard_ep_gpu_test for each of TEST_RANKS (default: all GPUs; on one GPU
#                      "2 4 8"), in TEST_MODE (default auto: a process per GPU when there are GPUs
#                      enough, else virtual ranks on one GPU; shared-gpu: processes sharing a GPU
#                      in one NCCL communicator, NCCL >= 2.30.3)
#   sanitize           compute-sanitizer memcheck and racecheck, case basic, for SAN_RANKS
#                      (default 2; "2 4" on one GPU), in TEST_MODE
#   sass               SASS of the dispatch/combine kernels: memory loads counted in this build
#                      and in .deps/sass-before/*.cubin (kernels of an earlier commit, if carried)
#   perf               epyard_ep_perf at the target shape and a sweep (PERF_ARGS to override;
#                      several runs separated by ';'; needs a GPU per rank)
#   probe              epyard_nvlink_probe: NVLink store bandwidth, all GPUs sending at once
#                      (PROBE_ARGS to override; several runs separated by ';')
# EP_NCCL: a folder or .tar.xz of an NCCL build (include/, lib/; scripts/build_nccl.sh makes one)
# to build and run against instead of torch's NCCL 2.28.9, e.g. EP_NCCL=.deps/nccl-2.30.7.tar.xz.
# EP_TRACE=ON builds the kernels with phase timing (printed at group destruction); BUILD_DIR
# (default build-dev, or build-dev-<nccl version> with EP_NCCL) lets builds live side by side
# (a build of a kernel variant too: CUDAFLAGS=-DSOME_SWITCH on its first configure).
# Carry .deps (Debian's libfabric-dev .deb; the top-level CMake wants libfabric headers).
# Logs and a summary land in $OUT (or /tmp/epyard-out).
set -u
source "$(dirname "$0")/common.sh"
tag=""
if [ -n "${EP_NCCL:-}" ]; then
  nccl=$EP_NCCL
  if [[ $nccl == *.tar.xz ]]; then
    mkdir -p /tmp/epyard-nccl-builds && tar -C /tmp/epyard-nccl-builds -xJf "$nccl" || { log "cannot unpack $nccl"; exit 1; }
    nccl=/tmp/epyard-nccl-builds/$(basename "$nccl" .tar.xz)
  fi
  export EPYARD_NCCL_HOME=$(cd "$nccl" && pwd)
  export LD_LIBRARY_PATH=$EPYARD_NCCL_HOME/lib:$LD_LIBRARY_PATH
  tag=-$(basename "$EPYARD_NCCL_HOME" | sed 's/^nccl-//')
fi
[ -f "$EPYARD_NCCL_HOME/include/nccl_device.h" ] || log "WARNING: NCCL's nccl_device.h is missing under $EPYARD_NCCL_HOME/include"
log "GPUs: $(nvidia-smi -L | wc -l); $(nvidia-smi -L | head -1); NCCL from $EPYARD_NCCL_HOME"
start=$(date +%s)
bdir=${BUILD_DIR:-build-dev$tag}
blog=$OUT/build-$(basename "$bdir").log
cmake -S . -B "$bdir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPYARD_WERROR=OFF \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUDAToolkit_ROOT=/usr/local/cuda \
  -DEPYARD_EP_TRACE=${EP_TRACE:-OFF} >"$blog" 2>&1 &&
  ninja -C "$bdir" epyard epyard_ep_gpu_test epyard_ep_perf epyard_nvlink_probe >>"$blog" 2>&1 ||
  { log "build failed (see $(basename "$blog"))"; grep -E "error|FAILED" -A3 "$blog" | head -40; exit 1; }
log "build ok ($(( $(date +%s) - start )) s)"
ngpu=$(nvidia-smi -L | wc -l)
bin=./$bdir/tests/ep/gpu/epyard_ep_gpu_test

mode=${TEST_MODE:-auto}
for step in ${*:-test perf}; do
  case $step in
    build) ;;
    test*)
      cases=${step#test}; cases=${cases#:}
      for n in ${TEST_RANKS:-$([ "$ngpu" -gt 1 ] && echo "$ngpu" || echo "2 4 8")}; do
        log "epyard_ep_gpu_test --nranks $n --mode $mode ${cases:+--cases $cases}"
        s=$(date +%s)
        name=test${tag}_${mode}_r$n
        timeout ${TEST_TIMEOUT:-400} $bin --nranks "$n" --mode "$mode" --timeout ${TEST_TIMEOUT:-400} \
          ${cases:+--cases "$cases"} >"$OUT/$name.log" 2>&1
        rc=$?
        grep -a -E "PASS|FAIL|ok:|EP GPU tests|launch|SKIPPED" "$OUT/$name.log" | head -60 | tee -a "$OUT/summary.txt"
        log "exit $rc after $(( $(date +%s) - s )) s"
      done ;;
    sanitize)
      for n in ${SAN_RANKS:-$([ "$ngpu" -gt 1 ] && echo 2 || echo "2 4")}; do
        for tool in memcheck racecheck; do
          log "compute-sanitizer --tool $tool ($n ranks, --mode $mode, case basic)"
          # NCCL probes kernels for other architectures at init: API errors are not ours, so
          # only memory and race errors are reported.
          timeout 600 /usr/local/cuda/bin/compute-sanitizer --tool $tool --target-processes all \
            --report-api-errors no --error-exitcode 9 $bin --nranks $n --mode $mode --cases basic \
            >"$OUT/sanitize${tag}_${tool}_r$n.log" 2>&1
          rc=$?
          grep -a -E "SUMMARY|PASS|FAIL|Error|at .*\.cuh?:[0-9]+" "$OUT/sanitize${tag}_${tool}_r$n.log" | sort | uniq -c | head -30 | tee -a "$OUT/summary.txt"
          log "$tool exit $rc"
        done
      done ;;
    sass)
      # Peer addresses come from kernel parameters (LlPeers): no load is spent on them. Count the
      # kernels' memory loads per instruction class here and in the carried older build.
      objs=$(find "$bdir/ep" -name 'll_dispatch.cu.o' -o -name 'll_combine.cu.o' | sort)
      for f in $objs .deps/sass-before/*.cubin; do
        [ -f "$f" ] || continue
        /usr/local/cuda/bin/cuobjdump -sass "$f" > "$OUT/$(basename "$f").sass" 2>/dev/null || continue
        log "sass $f: $(grep -cE '^\s+/\*[0-9a-f]+\*/' "$OUT/$(basename "$f").sass") instructions; \
LDG $(grep -cE '\bLDG\b' "$OUT/$(basename "$f").sass"), LD $(grep -cE '\bLD\.' "$OUT/$(basename "$f").sass"), \
LDC $(grep -cE '\bLDC' "$OUT/$(basename "$f").sass"), ULDC $(grep -cE '\bULDC' "$OUT/$(basename "$f").sass")"
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
    *) log "unknown step '$step' (build, test[:cases], sanitize, sass, perf, probe)"; exit 2 ;;
  esac
done
log done
