// Which network devices a Gloo communicator binds (internal to runtime/dist).
#pragma once

#include "runtime/dist/gloo_communicator.h"

#include <gloo/transport/device.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

namespace loom::dist {

/// One device per interface named by opts.interface, else $LOOM_GLOO_IFNAME,
/// else $GLOO_SOCKET_IFNAME (comma-separated lists); else one for
/// opts.hostname; else c10d's default device. Throws InputError naming an
/// unknown interface (with the ones this host has) or an unusable host name.
std::vector<std::shared_ptr<gloo::transport::Device>> makeGlooDevices(
    const GlooOptions& opts, const std::function<const char*(const char*)>& getenv = ::getenv);

}  // namespace loom::dist
