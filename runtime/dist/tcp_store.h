// Constructing a c10d::TCPStore on every libtorch loom builds against.
//
// From PyTorch 2.4 on, TCPStoreOptions::useLibUV defaults to true, and a
// libtorch built without libuv (Debian's, for one) refuses to construct any
// TCPStore, server or client, while it is set. makeTcpStore follows PyTorch's
// own switch: USE_LIBUV=0 in the environment selects the classic backend;
// otherwise the libuv backend is used where the build has it and the classic
// one where it does not. Both speak the same protocol. Libtorch releases
// without the option take the options unchanged.
#pragma once

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <string>

namespace loom::dist {

/// c10::make_intrusive<c10d::TCPStore>(host, opts) with the backend chosen as
/// above; errors other than a missing libuv propagate unchanged.
c10::intrusive_ptr<c10d::TCPStore> makeTcpStore(const std::string& host, c10d::TCPStoreOptions opts);

}  // namespace loom::dist
