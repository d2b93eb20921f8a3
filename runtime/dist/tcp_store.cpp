#include "runtime/dist/tcp_store.h"

#include <cstdlib>
#include <string_view>
#include <type_traits>
#include <utility>

namespace loom::dist {
namespace {

template <typename Options, typename = void>
struct HasBackendChoice : std::false_type {};
template <typename Options>
struct HasBackendChoice<Options, std::void_t<decltype(std::declval<Options&>().useLibUV)>> : std::true_type {};

// A template so that the branch naming useLibUV is only compiled where it exists.
template <typename Options>
c10::intrusive_ptr<c10d::TCPStore> construct(const std::string& host, Options opts) {
  if constexpr (HasBackendChoice<Options>::value) {
    const char* use_libuv = std::getenv("USE_LIBUV");
    if (use_libuv != nullptr && std::string_view(use_libuv) == "0") opts.useLibUV = false;
    if (opts.useLibUV) {
      try {
        return c10::make_intrusive<c10d::TCPStore>(host, opts);
      } catch (const std::exception& e) {
        // libtorch exports no "is libuv available": its refusal is the only answer.
        if (std::string_view(e.what()).find("without libuv") == std::string_view::npos) throw;
      }
      opts.useLibUV = false;
    }
  }
  return c10::make_intrusive<c10d::TCPStore>(host, opts);
}

}  // namespace

c10::intrusive_ptr<c10d::TCPStore> makeTcpStore(const std::string& host, c10d::TCPStoreOptions opts) {
  return construct(host, std::move(opts));
}

}  // namespace loom::dist
