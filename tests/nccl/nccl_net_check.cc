// epyard NCCL check: correctness and bandwidth of NCCL collectives, one process per GPU.
//
// The program is its own launcher. Run without --child-rank it is the launcher: it takes an
// ncclUniqueId (before any CUDA call), counts the visible GPUs, then forks and execs itself once
// per rank, passing the id as hex on the command line. Each child binds GPU <rank>, joins the
// communicator with ncclCommInitRank, checks all-reduce and all-to-all results on the host, times
// both, and rank 0 prints an nccl-tests style table plus one RESULT line. The launcher waits for
// every child with a deadline and kills the rest when one fails or the deadline passes.
//
// Exit codes (launcher): 0 all ranks passed, 1 a rank failed, 2 setup failed (no GPU, NCCL),
// 64 bad arguments, 124 timeout, 130 interrupted.
// Exit codes (rank): 0 ok, 1 wrong results, 2 CUDA/NCCL call failed, 3 NCCL async error.
//
// Files: nccl_check.h (what the parts share), command_line.cc (options, --help, the id as hex),
// launcher.cc (fork/exec of the ranks, waiting, timeouts, kill), rank.cc (a rank's setup,
// failure reporting and teardown), checks.cc (all-reduce / all-to-all correctness), bench.cc
// (bandwidth timing).

#include "nccl_check.h"

int main(int argc, char** argv) {
  using namespace epyard::nccl_check;
  Options o;
  int rc = ParseArgs(argc, argv, &o);
  if (rc >= 0) return rc;
  if (o.child_rank >= 0) return ChildMain(o);
  return LauncherMain(o, argv[0]);
}
