// MpiEnvironment, launchedByMpirun, LOOM_MPI_CHECK and mpiBootstrapEndpoint.
#include "runtime/dist/mpi_environment.h"
#include "runtime/dist/mpi_bootstrap.h"
#include "runtime/dist/mpi_check.h"
#include "tests/runtime/dist/mpi_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

namespace loom::dist::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::function<const char*(const char*)> fakeEnvironment(std::map<std::string, std::string> variables) {
  return [variables = std::move(variables)](const char* name) -> const char* {
    auto it = variables.find(name);
    return it == variables.end() ? nullptr : it->second.c_str();
  };
}

TEST(MpiEnvironmentTest, LaunchedByMpirunReadsTheLaunchersVariables) {
  EXPECT_FALSE(launchedByMpirun(fakeEnvironment({})));
  EXPECT_FALSE(launchedByMpirun(fakeEnvironment({{"RANK", "0"}, {"WORLD_SIZE", "2"}})));
  EXPECT_FALSE(launchedByMpirun(fakeEnvironment({{"OMPI_COMM_WORLD_SIZE", ""}})));
  EXPECT_TRUE(launchedByMpirun(fakeEnvironment({{"OMPI_COMM_WORLD_SIZE", "4"}})));
  EXPECT_TRUE(launchedByMpirun(fakeEnvironment({{"PMIX_RANK", "1"}})));
  EXPECT_TRUE(launchedByMpirun(fakeEnvironment({{"PMI_SIZE", "2"}})));
  EXPECT_TRUE(launchedByMpirun(::getenv));  // these tests run under mpirun
}

TEST(MpiEnvironmentTest, WorldMatchesWhatMpirunToldThisProcess) {
  const MpiEnvironment& environment = MpiEnvironment::instance();
  EXPECT_EQ(&environment, &MpiEnvironment::instance());
  EXPECT_EQ(std::to_string(environment.worldRank()), std::getenv("OMPI_COMM_WORLD_RANK"));
  EXPECT_EQ(std::to_string(environment.worldSize()), std::getenv("OMPI_COMM_WORLD_SIZE"));
  EXPECT_THAT(environment.libraryVersion(), HasSubstr("MPI"));
}

TEST(MpiEnvironmentTest, CheckMacroThrowsWithLocationCallMpiTextAndContext) {
  try {
    LOOM_MPI_CHECK(MPI_ERR_TRUNCATE, "recv of ", 3, " floats");
    ADD_FAILURE() << "LOOM_MPI_CHECK did not throw";
  } catch (const c10::Error& e) {
    const std::string message = e.what_without_backtrace();
    EXPECT_THAT(message, HasSubstr("mpi_environment_test.cpp:"));
    EXPECT_THAT(message, HasSubstr("MPI_ERR_TRUNCATE failed with MPI_ERR_TRUNCATE: message truncated"));
    EXPECT_THAT(message, HasSubstr("(recv of 3 floats)"));
  }
  EXPECT_NO_THROW(LOOM_MPI_CHECK(MPI_SUCCESS, "nothing"));
}

TEST(MpiEnvironmentTest, BootstrapEndpointIsTheSameOnEveryRankAndLocalOnOneNode) {
  const std::string endpoint = mpiBootstrapEndpoint();
  EXPECT_THAT(endpoint, StartsWith("127.0.0.1:"));  // mpirun started every rank on this machine
  const int port = std::stoi(endpoint.substr(endpoint.find(':') + 1));
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
  // Every rank holds rank 0's text.
  auto comm = worldCommunicator();
  at::Tensor mine = at::zeros({64}, at::kByte);
  std::copy(endpoint.begin(), endpoint.end(), mine.data_ptr<uint8_t>());
  at::Tensor gathered = at::zeros({comm->size() * 64}, at::kByte);
  comm->allGather(mine, gathered)->wait();
  for (int r = 0; r < comm->size(); ++r) EXPECT_TRUE(at::equal(gathered.narrow(0, r * 64, 64), mine)) << "rank " << r;
}

}  // namespace
}  // namespace loom::dist::test
