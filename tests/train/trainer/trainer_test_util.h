// A small job and corpus that train in about a second, for the trainer tests.
#pragma once

#include "runtime/config/options.h"
#include "train/data/byte_tokenizer.h"
#include "train/data/shard_writer.h"

#include <string>

namespace loom::train::test {

/// Writes `path` (.bin + .idx) holding `documents` short English-like documents
/// with repeated structure, so a small model's loss falls quickly.
inline void writeCorpus(const std::string& path, int documents, int salt) {
  static const char* kWords[] = {"the", "cat", "sat",  "on",   "a",   "mat",  "and",   "dog",
                                 "ran", "far", "away", "from", "red", "blue", "house", "tree"};
  data::ShardWriter writer(path);
  for (int d = 0; d < documents; ++d) {
    std::string text;
    for (int w = 0; w < 60; ++w) {
      text += kWords[(d * 5 + w * 3 + salt + (w % 4 == 0 ? d : 0)) % 16];
      text += (w % 10 == 9) ? ". " : " ";
    }
    writer.addDocument(data::ByteTokenizer().encode(text), "doc" + std::to_string(d));
  }
  writer.finish();
}

/// A job over `dir`/train.bin and `dir`/val.bin writing to `dir`/out.
inline JobOptions smallJob(const std::string& dir) {
  JobOptions job;
  job.model.dim = 32;
  job.model.layers = 2;
  job.model.heads = 4;
  job.model.kv_heads = 2;
  job.model.ffn_dim = 64;
  job.model.max_seq_len = 64;
  job.data.train_path = dir + "/train.bin";
  job.data.val_path = dir + "/val.bin";
  job.data.seq_len = 16;
  job.train.steps = 12;
  job.train.global_batch = 8;
  job.train.micro_batch = 4;  // two micro-batches: gradient accumulation is exercised
  job.train.threads = 1;
  job.train.out_dir = dir + "/out";
  job.train.checkpoint_every = 4;
  job.train.val_every = 6;
  job.train.val_batches = 2;
  job.optimizer.lr = 1e-2;
  job.optimizer.min_lr = 1e-3;
  job.optimizer.warmup_steps = 3;
  job.logging.log_every = 1;
  job.logging.peak_tflops = 1.0;  // skip the start-up GEMM probe
  return job;
}

}  // namespace loom::train::test
