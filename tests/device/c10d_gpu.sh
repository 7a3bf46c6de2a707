#!/usr/bin/env bash
# Builds the epyard Python package against the device's torch (/opt/torch/.venv) and runs its GPU
# checks with torchrun: every collective against ProcessGroupNCCL, DDP, errors, epyard.ep against
# the CPU reference with graph replay and torch.compile (all GPUs, then 2), the watchdog against
# graph capture and abort against calls on another thread (gpu_races.py), and a dead rank.
# Usage (inside a `device` run, repo root): bash tests/device/c10d_gpu.sh [build|test|perf]...
# (default "test perf"; "build" alone only builds, e.g. in the background while other GPU work
# runs; perf: perf/torch_perf.py on all GPUs, PERF_ARGS passed on). C10D_TIMEOUT: seconds
# per torchrun of the collective and EP checks (default 150); C10D_RANKS: rank counts (default:
# all GPUs, then 2; on one GPU 4 then 2 ranks sharing it as separate hosts).
# Carry .deps. Logs in $OUT.
set -u
source "$(dirname "$0")/common.sh"
PY=/opt/torch/.venv/bin/python
# The device's default compiler (/opt/gcc, via CXX) links libstdc++ statically, which a torch
# extension must not do (see c10d_backend/CMakeLists.txt): build with the system one.
cmake -S . -B build-py -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPYARD_WERROR=OFF -DEPYARD_BUILD_TESTS=OFF \
  -DCMAKE_C_COMPILER=/usr/bin/gcc -DCMAKE_CXX_COMPILER=/usr/bin/g++ \
  -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DPython3_EXECUTABLE=$PY >"$OUT/build_py.log" 2>&1 &&
  ninja -C build-py epyard_torch nccl-net-epyard >>"$OUT/build_py.log" 2>&1 || { log "build failed"; tail -30 "$OUT/build_py.log"; exit 1; }
log "build ok"
steps=" ${*:-test perf} "
for step in $steps; do
  case $step in build|test|perf) ;; *) log "unknown step '$step' (build, test, perf)"; exit 2 ;; esac
done
export PYTHONPATH=$PWD/build-py/python
export PYTHONFAULTHANDLER=1  # a crash prints the Python stack of every thread
ngpu=$(nvidia-smi -L | wc -l)
# One GPU: 4 and 2 ranks share it, each its own host (tests/c10d/placement.py sets NCCL_HOSTID);
# gpu_ep.py then skips (its ranks are not one NVLink domain).
ranks=${C10D_RANKS:-$([ "$ngpu" -gt 1 ] && echo "$ngpu 2" || echo "4 2")}
if [[ $steps == *" test "* ]]; then
# Nets between the ranks that are separate hosts (C10D_NETS): NCCL's Socket, and the epyard
# plugin over libfabric tcp on loopback. With one rank per GPU NCCL uses NVLink and the net is moot.
nets=${C10D_NETS:-$([ "$ngpu" -gt 1 ] && echo "default" || echo "socket epyard")}
for net in $nets; do
  case $net in
    socket) netenv=(NCCL_NET=Socket NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET) ;;
    epyard) netenv=(NCCL_NET_PLUGIN=epyard NCCL_NET=epyard NCCL_DEBUG=INFO NCCL_DEBUG_SUBSYS=INIT,NET FI_TCP_IFACE=lo EPYARD_OFI_PROVIDER="tcp;ofi_rxm"
                    LD_LIBRARY_PATH=$PWD/build-py/plugin:$LD_LIBRARY_PATH) ;;
    *) netenv=() ;;
  esac
  for n in $ranks; do
    log "gpu_collectives.py on $n ranks, net $net"
    env "${netenv[@]}" timeout ${C10D_TIMEOUT:-150} $PY -m torch.distributed.run --nproc-per-node "$n" \
      tests/c10d/gpu_collectives.py >"$OUT/c10d_${net}_r$n.log" 2>&1; log "exit $?"
    grep -a -m1 -oE "Using network [A-Za-z_]+" "$OUT/c10d_${net}_r$n.log" | tee -a "$OUT/summary.txt"
    grep -a -E "PASS|FAIL|Error" "$OUT/c10d_${net}_r$n.log" | sort | uniq -c | head -20 | tee -a "$OUT/summary.txt"
  done
done
for n in $ranks; do
  log "gpu_ep.py on $n ranks"
  timeout ${C10D_TIMEOUT:-150} $PY -m torch.distributed.run --nproc-per-node "$n" tests/c10d/gpu_ep.py >"$OUT/c10d_ep_r$n.log" 2>&1
  log "exit $?"
  grep -a -E "PASS|FAIL|Error|SKIPPED" "$OUT/c10d_ep_r$n.log" | sort | uniq -c | head -20 | tee -a "$OUT/summary.txt"
done
for n in 1 2; do
  log "gpu_races.py on $n rank(s) (graph capture beside the watchdog; abort during calls; EP group across an abort)"
  timeout 120 $PY -m torch.distributed.run --nproc-per-node $n tests/c10d/gpu_races.py >"$OUT/c10d_races_r$n.log" 2>&1
  log "exit $?"
  grep -a -E "PASS|FAIL|SKIPPED|Error" "$OUT/c10d_races_r$n.log" | head -20 | tee -a "$OUT/summary.txt"
done
log "gpu_dead_rank.py on 2 ranks"
timeout 120 $PY -m torch.distributed.run --nproc-per-node 2 tests/c10d/gpu_dead_rank.py >"$OUT/c10d_dead.log" 2>&1
grep -a -E "PASS|FAIL|exiting" "$OUT/c10d_dead.log" | tee -a "$OUT/summary.txt"
fi
if [[ $steps == *" perf "* && $ngpu -lt 2 ]]; then
  log "torch_perf.py skipped: one GPU (bus bandwidth between ranks sharing a GPU over the network means nothing)"
elif [[ $steps == *" perf "* ]]; then
  log "torch_perf.py on $ngpu ranks ${PERF_ARGS:-}"
  timeout 300 $PY -m torch.distributed.run --nproc-per-node "$ngpu" perf/torch_perf.py ${PERF_ARGS:-} \
    >"$OUT/torch_perf.log" 2>&1; log "exit $?"
  grep -a -E "^#|^  " "$OUT/torch_perf.log" | tee -a "$OUT/summary.txt"
fi
log done
