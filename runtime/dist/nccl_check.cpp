#include "runtime/dist/nccl_check.h"

#include "runtime/dist/nccl_recent_api.h"

#include <c10/util/Exception.h>

namespace loom::dist {
namespace {

[[noreturn]] void throwAt(const char* file, int line, std::string message, const std::string& context) {
  if (!context.empty()) message += " (" + context + ")";
  throw c10::Error({"loom::dist", file, static_cast<uint32_t>(line)}, message);
}

}  // namespace

void throwNcclError(ncclResult_t result, ncclComm_t comm, const char* expr, const char* file, int line,
                    const std::string& context) {
  std::string message = c10::str(file, ":", line, ": ", expr, " failed with ", ncclGetErrorString(result));
  const char* last = ncclGetLastError(comm);
  if (last != nullptr && *last != '\0') message += c10::str(": ", last);
  throwAt(file, line, std::move(message), context);
}

void throwCudaError(cudaError_t status, const char* expr, const char* file, int line, const std::string& context) {
  throwAt(file, line,
          c10::str(file, ":", line, ": ", expr, " failed with ", cudaGetErrorName(status), ": ",
                   cudaGetErrorString(status)),
          context);
}

int loadedNcclVersion() {
  int version = 0;
  LOOM_NCCL_CHECK(ncclGetVersion(&version), nullptr, "the version of the NCCL loaded");
  return version;
}

void requireNcclFunction(bool present, const char* name, const char* since, const std::string& what) {
  if (present) return;
  throw c10::Error({"loom::dist", __FILE__, static_cast<uint32_t>(__LINE__)},
                   c10::str(what, " needs ", name, " (NCCL ", since, " or later), but this process loaded NCCL ",
                            loadedNcclVersion(), ": another libnccl.so.2 (PyTorch's?) was loaded first; put a newer ",
                            "NCCL's lib directory first in LD_LIBRARY_PATH"));
}

}  // namespace loom::dist
