#include "runtime/dist/mpi_check.h"

#include <c10/util/Exception.h>

namespace loom::dist {

std::string mpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  int error_class = code;
  // Both calls are valid before MPI_Init and after MPI_Finalize; if they fail we still have the number.
  if (MPI_Error_class(code, &error_class) != MPI_SUCCESS) error_class = code;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  char class_text[MPI_MAX_ERROR_STRING] = {};
  int class_length = 0;
  if (error_class != code && MPI_Error_string(error_class, class_text, &class_length) == MPI_SUCCESS) {
    return std::string(class_text, class_length) + ": " + std::string(text, length);
  }
  return std::string(text, length);
}

void throwMpiError(int code, const char* expr, const char* file, int line, const std::string& context) {
  std::string message = c10::str(file, ":", line, ": ", expr, " failed with ", mpiErrorString(code));
  if (!context.empty()) message += " (" + context + ")";
  throw c10::Error({"throwMpiError", file, static_cast<uint32_t>(line)}, message);
}

}  // namespace loom::dist
