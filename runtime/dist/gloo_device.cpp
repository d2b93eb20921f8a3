#include "runtime/dist/gloo_device.h"

#include "runtime/core/error.h"
#include "runtime/dist/gloo_group.h"

#include <ifaddrs.h>

#include <set>
#include <sstream>

namespace loom::dist {
namespace {

std::string localInterfaces() {
  std::set<std::string> names;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* it = list; it != nullptr; it = it->ifa_next) names.insert(it->ifa_name);
    ::freeifaddrs(list);
  }
  std::ostringstream out;
  for (const std::string& name : names) out << (out.tellp() > 0 ? ", " : "") << name;
  return out.str();
}

std::vector<std::string> splitList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

}  // namespace

std::vector<std::shared_ptr<gloo::transport::Device>> makeGlooDevices(
    const GlooOptions& opts, const std::function<const char*(const char*)>& getenv) {
  std::string interfaces = opts.interface;
  std::string field = "GlooOptions::interface";
  for (const char* variable : {"LOOM_GLOO_IFNAME", "GLOO_SOCKET_IFNAME"}) {
    const char* value = getenv(variable);
    if (!interfaces.empty() || value == nullptr || *value == '\0') continue;
    interfaces = value;
    field = variable;
  }
  std::vector<std::shared_ptr<gloo::transport::Device>> devices;
  if (!interfaces.empty()) {
    for (const std::string& name : splitList(interfaces)) {
      try {
        devices.push_back(GlooGroup::createDeviceForInterface(name));
      } catch (const std::exception& e) {
        LOOM_THROW(InputError, "gloo: cannot use network interface '", name, "' (", field, "=", interfaces,
                   "): ", errorMessage(e), ". This host has: ", localInterfaces());
      }
    }
    LOOM_CHECK_INPUT(!devices.empty(), "gloo: ", field, "='", interfaces, "' names no interface");
    return devices;
  }
  if (!opts.hostname.empty()) {
    try {
      devices.push_back(GlooGroup::createDeviceForHostname(opts.hostname));
    } catch (const std::exception& e) {
      LOOM_THROW(InputError, "gloo: cannot bind to host '", opts.hostname,
                 "' (GlooOptions::hostname): ", errorMessage(e),
                 ". Name an address of this host, or an interface (LOOM_GLOO_IFNAME)");
    }
    return devices;
  }
  devices.push_back(GlooGroup::createDefaultDevice());
  return devices;
}

}  // namespace loom::dist
