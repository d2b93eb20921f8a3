#include "runtime/dist/gloo_device.h"
#include "runtime/core/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <map>
#include <string>

namespace loom::dist {
namespace {

using ::testing::HasSubstr;
using Env = std::map<std::string, std::string>;

std::function<const char*(const char*)> lookup(const Env& env) {
  return [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
}

std::string inputErrorOf(const std::function<void()>& call) {
  try {
    call();
  } catch (const InputError& e) {
    return errorMessage(e);
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

TEST(GlooDeviceTest, InterfacesComeFromOptionsThenLoomThenGlooVariables) {
  const Env env = {{"LOOM_GLOO_IFNAME", "lo,lo"}, {"GLOO_SOCKET_IFNAME", "nope0"}};
  EXPECT_EQ(makeGlooDevices({}, lookup(env)).size(), 2u);
  GlooOptions named;
  named.interface = "lo";
  const auto devices = makeGlooDevices(named, lookup(env));
  ASSERT_EQ(devices.size(), 1u);
  EXPECT_THAT(devices[0]->str(), HasSubstr("127.0.0.1"));
  EXPECT_THAT(inputErrorOf([&] {
                makeGlooDevices({}, lookup({{"GLOO_SOCKET_IFNAME", "nope0"}}));
              }),
              HasSubstr("cannot use network interface 'nope0' (GLOO_SOCKET_IFNAME=nope0)"));
}

TEST(GlooDeviceTest, AnUnknownInterfaceListsTheHostsOnes) {
  GlooOptions opts;
  opts.interface = "nope0";
  EXPECT_THAT(inputErrorOf([&] { makeGlooDevices(opts, lookup({})); }), HasSubstr("This host has: "));
  EXPECT_THAT(inputErrorOf([&] { makeGlooDevices(opts, lookup({})); }), HasSubstr("lo"));
}

TEST(GlooDeviceTest, AHostNameThatIsNotOursIsBadInput) {
  GlooOptions opts;
  opts.hostname = "no-such-host.invalid";
  EXPECT_THAT(inputErrorOf([&] { makeGlooCommunicator(c10::make_intrusive<c10d::HashStore>(), 0, 1, opts); }),
              HasSubstr("cannot bind to host 'no-such-host.invalid'"));
}

}  // namespace
}  // namespace loom::dist
