// The small Llama the context-parallel and HDP tests train (two layers of
// width 32, grouped-query attention), initialised deterministically.
#pragma once

#include "model/init.h"
#include "model/llama.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdint>

namespace loom::model::test {

inline Llama tinyModel(int64_t max_seq_len, uint64_t seed) {
  ModelOptions o;
  o.vocab_size = 64;
  o.dim = 32;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = 2;
  o.ffn_dim = 48;
  o.max_seq_len = max_seq_len;
  Llama model(o);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  initializeParameters(*model, gen);
  return model;
}

}  // namespace loom::model::test
