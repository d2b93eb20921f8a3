#include "elastic/state_broadcast.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>

#include <cstring>

namespace loom::elastic {

NamedTensors broadcastNamedTensors(dist::Communicator& comm, const NamedTensors& tensors, int root) {
  const bool is_root = comm.rank() == root;
  // Header: per tensor {dtype, name length, ndim, dims...}; the names follow as bytes.
  std::vector<int64_t> header;
  std::string names;
  if (is_root) {
    for (const auto& [name, t] : tensors) {
      header.push_back(static_cast<int64_t>(t.scalar_type()));
      header.push_back(static_cast<int64_t>(name.size()));
      header.push_back(t.dim());
      for (int64_t d : t.sizes()) header.push_back(d);
      names += name;
    }
  }
  at::Tensor sizes = at::tensor({static_cast<int64_t>(tensors.size()), static_cast<int64_t>(header.size()),
                                 static_cast<int64_t>(names.size())},
                                at::kLong);
  comm.broadcast(sizes, root)->wait();
  const int64_t count = sizes[0].item<int64_t>();
  at::Tensor header_t = at::empty({sizes[1].item<int64_t>()}, at::kLong);
  at::Tensor names_t = at::empty({sizes[2].item<int64_t>()}, at::kByte);
  if (is_root) {
    std::memcpy(header_t.data_ptr<int64_t>(), header.data(), header.size() * sizeof(int64_t));
    std::memcpy(names_t.data_ptr<uint8_t>(), names.data(), names.size());
  }
  if (header_t.numel() > 0) comm.broadcast(header_t, root)->wait();
  if (names_t.numel() > 0) comm.broadcast(names_t, root)->wait();
  if (is_root) {
    for (const auto& [name, t] : tensors) {
      LOOM_CHECK(t.is_contiguous(), "broadcastNamedTensors: ", name, " is not contiguous");
      at::Tensor sent = t;  // the same storage; broadcast takes a mutable handle
      if (sent.numel() > 0) comm.broadcast(sent, root)->wait();
    }
    return tensors;
  }
  NamedTensors out;
  const int64_t* h = header_t.data_ptr<int64_t>();
  const char* n = reinterpret_cast<const char*>(names_t.data_ptr<uint8_t>());
  for (int64_t i = 0; i < count; ++i) {
    const auto dtype = static_cast<at::ScalarType>(*h++);
    const int64_t name_length = *h++;
    const int64_t ndim = *h++;
    std::vector<int64_t> shape(h, h + ndim);
    h += ndim;
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(dtype));
    if (t.numel() > 0) comm.broadcast(t, root)->wait();
    out.emplace_back(std::string(n, static_cast<size_t>(name_length)), t);
    n += name_length;
  }
  return out;
}

}  // namespace loom::elastic
