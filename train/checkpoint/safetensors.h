// Reading and writing tensors as safetensors files (docs/safetensors.md), the
// format that moves weights to and from PyTorch / Hugging Face.
//
// Supported dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL (double, float,
// half, bfloat16, int64, int32, int16, int8, uint8, bool). Data is stored
// little-endian, as the host holds it: loom builds on little-endian hosts only
// (checked at compile time).
#pragma once

#include "runtime/core/named_tensors.h"

#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace loom::checkpoint {

using loom::NamedTensors;

/// Writes `tensors` in the given order, plus `metadata` under "__metadata__"
/// (omitted when empty), atomically: a crash leaves the old file or the new
/// one. Tensors may have any layout and device (each is made a contiguous CPU
/// copy, one at a time, while streaming: memory use stays at one tensor).
/// Throws InputError on an empty, repeated or reserved ("__metadata__") name, a
/// dtype outside the list above, a non-strided (sparse) tensor, names or
/// metadata that are not valid UTF-8, or a failed write (the old file is kept).
void writeSafetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor as an owning, contiguous CPU tensor, in file (data
/// offset) order. Throws InputError naming the file (and tensor) when it cannot
/// be read or fails any check of parseSafetensorsHeader, or when a BOOL tensor
/// holds a byte other than 0 or 1.
NamedTensors readSafetensors(const std::string& path);

/// The "__metadata__" strings of a file (empty when it has none); reads the
/// header only. Throws like readSafetensors.
std::map<std::string, std::string> readSafetensorsMetadata(const std::string& path);

/// Copies a file's tensors into `targets` (e.g. model parameters, on any
/// device) under no-grad. The file must hold exactly the target names, with
/// equal shapes and dtypes; otherwise throws InputError, before touching any
/// target, listing the missing names, the unexpected names and each shape or
/// dtype mismatch. `what` says what the file is for (e.g. "--init-from") and
/// starts the message. REQUIRES: target names are unique.
void loadSafetensorsInto(const std::string& path, const NamedTensors& targets, const std::string& what);

}  // namespace loom::checkpoint
