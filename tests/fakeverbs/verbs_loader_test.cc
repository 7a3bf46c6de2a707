// The verbs entry points stay valid through process exit: the async-event threads are detached
// and may read the table after main returns (CI saw ASan report a use after free there, the table
// having been freed by a static destructor while a watcher thread started).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>

#include "verbs/loader.h"

namespace epyard::net::verbs {
namespace {

const VerbsApi* g_api = nullptr;

// Registered before the first loadVerbs, so it runs after every static destructor that call
// registered: what a detached thread sees late in exit.
void readTheTableAtExit() {
  const char* name = g_api->event_type_str(IBV_EVENT_PORT_ACTIVE);
  _exit(name != nullptr ? 0 : 4);
}

TEST(VerbsLoader, TheTableOutlivesStaticDestructors) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process: nothing loaded yet
  EXPECT_EXIT(
      {
        std::atexit(readTheTableAtExit);
        std::string why;
        g_api = loadVerbs(EPYARD_FAKEVERBS_PATH, &why);
        if (g_api == nullptr) {
          fprintf(stderr, "%s\n", why.c_str());
          _exit(3);
        }
        exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace epyard::net::verbs
