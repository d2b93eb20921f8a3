#include "runtime/dist/nccl_check.h"

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

}  // namespace loom::dist
