// Files written so that a crash never leaves a half-written one behind, and
// checks that turn unusable paths into InputErrors that name the path.
#pragma once

#include <string>

namespace loom {

/// Creates `dir` (and parents) if needed and checks that a file can be created
/// in it. Throws InputError naming `what` (e.g. "train.out_dir") and the path.
void ensureWritableDir(const std::string& dir, const std::string& what);

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// fsync and rename: readers see the old file or the new one, never a mix.
void writeFileAtomically(const std::string& path, const std::string& bytes);

/// Whole file as bytes. Throws InputError naming `what` and the path when the
/// file is missing or unreadable.
std::string readFile(const std::string& path, const std::string& what);

/// fsyncs a directory so that a rename inside it survives a power cut.
void syncDirectory(const std::string& dir);

bool pathExists(const std::string& path);

}  // namespace loom
