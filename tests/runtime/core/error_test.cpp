#include "runtime/core/error.h"

#include <gtest/gtest.h>

#include <stdexcept>

namespace loom {
namespace {

TEST(ErrorTest, InputErrorMapsToBadInputExitCodeAndKeepsMessage) {
  try {
    LOOM_CHECK_INPUT(1 + 1 == 3, "model.heads (", 6, ") must divide model.dim (", 256, ")");
    FAIL() << "LOOM_CHECK_INPUT did not throw";
  } catch (const std::exception& e) {
    EXPECT_EQ(exitCodeFor(e), ExitCode::kBadInput);
    EXPECT_EQ(errorMessage(e), "model.heads (6) must divide model.dim (256)");
  }
}

TEST(ErrorTest, PeerLostAndInternalErrorsGetTheirOwnCodes) {
  try {
    LOOM_THROW(PeerLostError, "rank 3 stopped answering");
  } catch (const std::exception& e) {
    EXPECT_EQ(exitCodeFor(e), ExitCode::kPeerLost);
    EXPECT_EQ(errorMessage(e), "rank 3 stopped answering");
  }
  EXPECT_EQ(exitCodeFor(std::runtime_error("boom")), ExitCode::kInternal);
  try {
    LOOM_CHECK(false, "invariant broken");
  } catch (const std::exception& e) {
    EXPECT_EQ(exitCodeFor(e), ExitCode::kInternal);
  }
}

TEST(ErrorTest, PassingCheckDoesNotThrow) {
  EXPECT_NO_THROW(LOOM_CHECK_INPUT(true, "never"));
}

TEST(ErrorTest, DescribeErrnoNamesTheCall) {
  EXPECT_EQ(describeErrno("open", ENOENT), "open: No such file or directory");
}

}  // namespace
}  // namespace loom
