// NCCL entry points newer than the NCCL that PyTorch may have loaded already. A
// process holds one libnccl.so.2: in Python it is PyTorch's (Debian's PyTorch 2.6
// brings NCCL 2.22, which has no ncclCommShrink), and loom built against NCCL 2.28
// must still load next to it. So every file that calls one of these includes this
// header, which makes them weak references: where the loaded NCCL lacks one its
// address is null, and the feature that needs it says so instead of the dynamic
// loader refusing all of loom with "undefined symbol".
#pragma once

#include <nccl.h>

#include <string>

#pragma weak ncclCommShrink            // NCCL 2.27
#pragma weak ncclCommWindowRegister    // NCCL 2.27
#pragma weak ncclCommWindowDeregister  // NCCL 2.27
#pragma weak ncclDevCommCreate         // NCCL 2.28
#pragma weak ncclDevCommDestroy        // NCCL 2.28

namespace loom::dist {

/// The version code of the NCCL this process loaded (ncclGetVersion; 22809 is 2.28.9).
int loadedNcclVersion();

/// Throws c10::Error unless `present`: "<what> needs <name> (NCCL <since>), but this
/// process loaded NCCL <version>", with how to load a newer one.
void requireNcclFunction(bool present, const char* name, const char* since, const std::string& what);

}  // namespace loom::dist
