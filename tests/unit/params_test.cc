// The parameter registry: parsing, range checks, defaults on bad values.
#include <gtest/gtest.h>
#include <stdlib.h>

#include "engine/params.h"

namespace epyard::net {
namespace {

TEST(ParseIntParam, AcceptsDecimalInRange) {
  int64_t v = -1;
  EXPECT_TRUE(parseIntParam("42", 1, 100, &v));
  EXPECT_EQ(v, 42);
  EXPECT_TRUE(parseIntParam("1", 1, 100, &v));
  EXPECT_EQ(v, 1);
  EXPECT_TRUE(parseIntParam("100", 1, 100, &v));
  EXPECT_EQ(v, 100);
}

TEST(ParseIntParam, RejectsGarbageAndOutOfRange) {
  int64_t v = 7;
  for (const char* bad :
       {"", "abc", "12abc", "0x10", "0", "101", "-5", " 5", "99999999999999999999"})
    EXPECT_FALSE(parseIntParam(bad, 1, 100, &v)) << bad;
  EXPECT_FALSE(parseIntParam(nullptr, 1, 100, &v));
  EXPECT_EQ(v, 7) << "a rejected value must leave the output untouched";
}

TEST(LoadParams, ReadsEnvironmentAndKeepsDefaultsOnBadValues) {
  setenv("EPYARD_NET_RAILS", "3", 1);
  setenv("EPYARD_NET_TIMEOUT_MS", "not-a-number", 1);
  setenv("EPYARD_OFI_PROVIDER", "tcp;ofi_rxm", 1);
  Params p = loadParams();
  EXPECT_EQ(p.rails, 3);
  EXPECT_EQ(p.timeout_ms, Params().timeout_ms) << "bad value falls back to the default";
  EXPECT_EQ(p.ofi_provider, "tcp;ofi_rxm");
  setenv("EPYARD_NET_RAILS", "9", 1);  // above the maximum of 8
  EXPECT_EQ(loadParams().rails, Params().rails);
  unsetenv("EPYARD_NET_RAILS");
  unsetenv("EPYARD_NET_TIMEOUT_MS");
  unsetenv("EPYARD_OFI_PROVIDER");
}

TEST(LoadParams, FallsBackToFiProvider) {
  unsetenv("EPYARD_OFI_PROVIDER");
  setenv("FI_PROVIDER", "efa", 1);
  EXPECT_EQ(loadParams().ofi_provider, "efa");
  setenv("EPYARD_OFI_PROVIDER", "tcp;ofi_rxm", 1);
  EXPECT_EQ(loadParams().ofi_provider, "tcp;ofi_rxm") << "ours wins over FI_PROVIDER";
  unsetenv("FI_PROVIDER");
  unsetenv("EPYARD_OFI_PROVIDER");
}

}  // namespace
}  // namespace epyard::net

namespace epyard::net {
namespace {

TEST(ResolveAutoParams, ThreadsFollowCoresAndRailsFollowThreads) {
  Params p;  // defaults: threads auto (-1), rails auto (0)
  resolveAutoParams(&p, 2);
  EXPECT_EQ(p.progress_threads, 0) << "no background threads on a small machine";
  EXPECT_EQ(p.rails, 1);
  Params big;
  resolveAutoParams(&big, 64);
  EXPECT_EQ(big.progress_threads, 8);
  EXPECT_EQ(big.rails, 8);
  Params mid;
  resolveAutoParams(&mid, 16);
  EXPECT_EQ(mid.progress_threads, 2);
  Params set;
  set.progress_threads = 3;
  set.rails = 2;
  resolveAutoParams(&set, 64);
  EXPECT_EQ(set.progress_threads, 3) << "explicit values are kept";
  EXPECT_EQ(set.rails, 2);
}

}  // namespace
}  // namespace epyard::net
