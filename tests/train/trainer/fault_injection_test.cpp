// LOOM_FAULT_INJECT parsing: entries fire only for their worker, step and
// phase, once; malformed entries name the variable and the entry. (Firing
// itself raises a real signal: the chaos tests exercise it in child processes.)
#include "train/fault_injection.h"

#include "runtime/core/error.h"
#include "tests/support/error_of.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::train {
namespace {

using ::testing::HasSubstr;
using loom::test::errorOf;

TEST(FaultInjectionTest, EntriesForOtherWorkersStepsOrPhasesDoNotFire) {
  // Worker 1 would be killed at step 5's commit; as worker 0 nothing fires.
  FaultInjector injector("1:5:commit:KILL;2:3:forward:STOP", 0);
  for (int64_t step = 1; step <= 6; ++step) {
    for (FaultPhase phase : {FaultPhase::kForward, FaultPhase::kAllReduce, FaultPhase::kCommit, FaultPhase::kSnapshot,
                             FaultPhase::kOuter}) {
      injector.at(phase, step);
    }
  }
  FaultInjector none("", 1);
  none.at(FaultPhase::kCommit, 5);
  SUCCEED();  // still alive
}

TEST(FaultInjectionTest, MalformedEntriesAreNamed) {
  EXPECT_THAT(errorOf<InputError>([] { FaultInjector("2:7:allreduce", 0); }),
              HasSubstr("LOOM_FAULT_INJECT entry \"2:7:allreduce\" is not <id>:<step>:<phase>:<signal>"));
  EXPECT_THAT(errorOf<InputError>([] { FaultInjector("2:7:backward:KILL", 0); }),
              HasSubstr("phase \"backward\" is not one of forward, allreduce, commit, snapshot, outer"));
  EXPECT_THAT(errorOf<InputError>([] { FaultInjector("2:7:forward:TERM", 0); }),
              HasSubstr("signal \"TERM\" is not KILL or STOP"));
  EXPECT_THAT(errorOf<InputError>([] { FaultInjector("two:7:forward:KILL", 0); }),
              HasSubstr("id and step must be integers"));
}

}  // namespace
}  // namespace loom::train
