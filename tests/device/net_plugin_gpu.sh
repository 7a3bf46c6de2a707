#!/usr/bin/env bash
# Builds the plugin, the perf binary and the NCCL check on the device machine, then measures
# NCCL all_reduce / all-to-all across all GPUs (on one GPU: 4 and 2 ranks sharing it as separate
# hosts, NET_RANKS to choose) with NCCL's Socket transport (default and tuned) and with epyard,
# P2P and SHM off so every byte crosses the network plugin.
# Usage (inside a `device` run, repo root): bash tests/device/net_plugin_gpu.sh [variants...]
#   variants: socket, socket-tuned, ep[-r<rails>-t<threads>-s<KiB>k], verbs (the emulated verbs
#   device), perf[<threads>]; default "socket socket-tuned ep perf"
# Carry .deps (Debian's libfabric-dev .deb: the device has libfabric's runtime, no headers).
# Logs and a summary land in $OUT (or /tmp/epyard-out).
set -u
source "$(dirname "$0")/common.sh"
log "GPUs: $(nvidia-smi -L | wc -l); $(nvidia-smi -L | head -1)"
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DEPYARD_WERROR=OFF \
  -DCUDAToolkit_ROOT=/usr/local/cuda >"$OUT/build.log" 2>&1 &&
  ninja -C build-dev nccl-net-epyard epyard_net_perf epyard_nccl_check epyard_fakeverbs >>"$OUT/build.log" 2>&1 ||
  { log "build failed (see build.log)"; tail -30 "$OUT/build.log"; exit 1; }
log "build ok"

export FI_TCP_IFACE=lo EPYARD_OFI_PROVIDER="tcp;ofi_rxm"
export LD_LIBRARY_PATH=$PWD/build-dev/plugin:$LD_LIBRARY_PATH
ngpu=$(nvidia-smi -L | wc -l)
BYTES=${BYTES:-1G} ITERS=${ITERS:-10}

# Rank counts: one rank per GPU; on one GPU, 4 and then 2 ranks sharing it, each its own host
# (the check sets NCCL_HOSTID per rank), so every byte still crosses the network transport.
NET_RANKS=${NET_RANKS:-$([ "$ngpu" -gt 1 ] && echo "$ngpu" || echo "4 2")}

run_nccl() {  # label, then env assignments
  local label=$1; shift
  for n in $NET_RANKS; do
    local name=${label}_r$n
    log "nccl $label, $n ranks on $ngpu GPU(s): $*"
    env "$@" NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1 NCCL_NVLS_ENABLE=0 NCCL_DEBUG=INFO \
      NCCL_DEBUG_SUBSYS=INIT,NET timeout 200 ./build-dev/tests/nccl/epyard_nccl_check \
      --nranks "$n" --force-net --bytes "$BYTES" --a2a-bytes 256M --iters "$ITERS" \
      --label "$name" >"$OUT/nccl_$name.log" 2>&1
    local rc=$?
    grep -a -m1 -E "\[launcher\] [0-9]+ ranks on" "$OUT/nccl_$name.log" | tee -a "$OUT/summary.txt"
    grep -a -m1 -oE "Using network [A-Za-z_]+" "$OUT/nccl_$name.log" | tee -a "$OUT/summary.txt"
    grep -a -m1 -oE "epyard: [0-9]+ rails per connection.*" "$OUT/nccl_$name.log" | tee -a "$OUT/summary.txt"
    grep -a -E "^RESULT|^ *(allreduce|alltoall)" "$OUT/nccl_$name.log" | tee -a "$OUT/summary.txt"
    [ $rc -eq 0 ] || { log "$name exited $rc"; grep -a -E "WARN|FAIL|error|signal" "$OUT/nccl_$name.log" | head -8 | tee -a "$OUT/summary.txt"; }
  done
}

variants=${*:-"socket socket-tuned ep perf"}
for v in $variants; do
  case $v in
    socket) run_nccl socket NCCL_NET=Socket ;;
    socket-tuned) run_nccl socket-tuned NCCL_NET=Socket NCCL_SOCKET_NTHREADS=8 NCCL_NSOCKS_PERTHREAD=2 ;;
    ep|ep-*)  # ep = the plugin's defaults; ep-r<rails>-t<threads>-s<stripe KiB>k overrides
      set -- NCCL_NET_PLUGIN=epyard NCCL_NET=epyard
      for f in $(echo "${v#ep}" | tr '-' ' '); do
        case $f in
          r*) set -- "$@" EPYARD_NET_RAILS="${f#r}" ;;
          t*) set -- "$@" EPYARD_NET_PROGRESS_THREADS="${f#t}" ;;
          s*) s=${f#s}; set -- "$@" EPYARD_NET_MIN_STRIPE_BYTES=$(( ${s%k} * 1024 )) ;;
        esac
      done
      run_nccl "$v" "$@" ;;
    verbs)  # the verbs transport on the emulated device (UNIX sockets, host memory): NCCL end to
            # end over verbs; a correctness run, not a speed one (no RDMA NIC on this machine)
      run_nccl verbs NCCL_NET_PLUGIN=epyard NCCL_NET=epyard NCCL_NET_GDR_LEVEL=LOC \
        EPYARD_NET_TRANSPORT=verbs EPYARD_IB_VERBS_LIBRARY="$PWD/build-dev/tests/fakeverbs/libepyard_fakeverbs.so" \
        EPYARD_FAKEVERBS_DEVICES=fakeib0:ib EPYARD_FAKEVERBS_DIR=/tmp/epyard-fakeverbs-nccl ;;
    perf*)  # perf = defaults; perf<N> = N progress threads
      t=${v#perf}
      log "epyard_net_perf --raw${t:+, EPYARD_NET_PROGRESS_THREADS=$t}"
      env ${t:+EPYARD_NET_PROGRESS_THREADS=$t} timeout 120 ./build-dev/perf/epyard_net_perf --raw \
        -b 8 -e 64M -n 100 2>&1 | tee -a "$OUT/summary.txt" ;;
  esac
done
log done
