// EP GPU tests: every rank runs the same cases on its own GPU and checks its outputs against
// the CPU reference (which it runs for all ranks: routings are generated from shared seeds).
// Launches its own ranks (one process per GPU); needs at least 2 GPUs and prints SKIPPED
// otherwise.  Usage: epyard_ep_gpu_test [--nranks N] [--cases a,b,...] [--timeout S]
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "ep_gpu_cases.h"
#include "launch/ranks.h"

using namespace epyard::ep::test;

int main(int argc, char** argv) {
  int nranks = 0, timeout_s = 900;
  std::set<std::string> only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--nranks" && i + 1 < argc) {
      nranks = std::atoi(argv[++i]);
    } else if (a == "--timeout" && i + 1 < argc) {
      timeout_s = std::atoi(argv[++i]);
    } else if (a == "--cases" && i + 1 < argc) {
      std::string list = argv[++i];
      for (size_t at = 0; at <= list.size();) {
        size_t comma = list.find(',', at);
        if (comma == std::string::npos) comma = list.size();
        only.insert(list.substr(at, comma - at));
        at = comma + 1;
      }
    } else {
      std::fprintf(stderr, "usage: %s [--nranks N] [--cases a,b,...] [--timeout S]\ncases:", argv[0]);
      for (const TestCase& c : allCases()) std::fprintf(stderr, " %s", c.name);
      std::fprintf(stderr, "\n");
      return 64;
    }
  }
  for (const std::string& name : only) {
    bool known = false;
    for (const TestCase& c : allCases()) known |= name == c.name;
    if (!known) {
      std::fprintf(stderr, "unknown case '%s'\n", name.c_str());
      return 64;
    }
  }
  const int gpus = epyard::launch::visibleGpus();
  if (nranks == 0) nranks = gpus;
  if (gpus < 2 || nranks < 2) {
    std::printf("SKIPPED: the EP GPU tests need at least 2 GPUs (%d visible, %d ranks asked)\n",
                gpus, nranks);
    return 0;
  }
  if (nranks > gpus) {
    std::fprintf(stderr, "--nranks %d is more than the %d visible GPUs (one rank per GPU)\n", nranks, gpus);
    return 64;
  }
  std::printf("EP GPU tests: %d ranks\n", nranks);
  std::fflush(stdout);
  int rc = epyard::launch::runRanks(nranks, timeout_s, [&](const epyard::launch::RankEnv& env) {
    return runCases(env, only);
  });
  std::printf(rc == 0 ? "EP GPU tests: all passed on %d ranks\n" : "EP GPU tests: FAILED on %d ranks\n", nranks);
  return rc;
}
