#!/bin/sh
# Checks epyard_nccl_check's launcher without GPU or NCCL: it must pass when every rank passes,
# and exit non-zero, naming the rank, when a rank fails, crashes or hangs, leaving no rank behind.
# usage: launcher_selftest.sh PATH/TO/epyard_nccl_check
set -u
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0

# expect MODE WANT_RC PATTERN: run the self-test MODE on 3 ranks, check exit code and output.
expect() {
  "$bin" --launcher-selftest "$1" --nranks 3 --timeout-s 3 --grace-s 1 >"$out" 2>&1
  rc=$?
  if [ "$rc" -ne "$2" ] || ! grep -q "$3" "$out"; then
    echo "FAIL: self-test $1: exit code $rc (want $2), output should hold '$3':"
    sed 's/^/  | /' "$out"
    status=1
  else
    echo "ok: self-test $1 (exit code $rc)"
  fi
  if pgrep -f -- "--launcher-selftest $1" >/dev/null 2>&1; then
    echo "FAIL: self-test $1 left ranks running"
    status=1
  fi
}

expect ok 0 'all 3 ranks passed'
expect fail 1 'rank 2 failed: exit code 1'
expect crash 1 'rank 0 failed: killed by signal 6'
expect hang 124 'TIMEOUT: ranks 0 1 2 still running'

"$bin" --help >/dev/null || { echo "FAIL: --help"; status=1; }
"$bin" --bytes 12Q >/dev/null 2>&1
if [ $? -ne 64 ]; then echo "FAIL: a bad --bytes was accepted"; status=1; fi
exit $status
