// loom-data: text files -> token shards (docs/data.md), and a validator for
// existing shards. Exit codes: 0 ok, 2 bad input, 1 internal error.
#include "runtime/core/cli_main.h"
#include "runtime/core/error.h"
#include "runtime/core/file_util.h"
#include "train/data/byte_tokenizer.h"
#include "train/data/shard_writer.h"
#include "train/data/token_shard.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

using loom::data::ShardWriter;

struct Args {
  std::vector<std::string> inputs;
  std::string out_dir;
  int64_t val_every = 0;
  std::string name_train = "train";
  std::string name_val = "val";
  bool check = false;
  int64_t vocab_size = loom::data::kMinVocabSize;
};

void checkShardName(const std::string& name, const char* flag) {
  LOOM_CHECK_INPUT(!name.empty() && name.find('/') == std::string::npos, flag, " \"", name,
                   "\" must be a non-empty file stem without '/'");
}

void report(const ShardWriter& writer) {
  std::cout << writer.path() << ": " << writer.documents() << " documents, " << writer.tokens() << " tokens"
            << std::endl;
}

// Each input is one document, in order; with val_every = K > 0, documents
// K, 2K, ... (1-based) go to the validation shard.
void writeShards(const Args& args) {
  checkShardName(args.name_train, "--name-train");
  checkShardName(args.name_val, "--name-val");
  LOOM_CHECK_INPUT(args.name_train != args.name_val, "--name-train and --name-val are both \"", args.name_train,
                   "\"; give the two shards different names");
  LOOM_CHECK_INPUT(args.val_every >= 0, "--val-every must be >= 0 (0 = no validation shard), got ", args.val_every);
  LOOM_CHECK_INPUT(args.val_every != 1, "--val-every 1 puts every document in the validation shard and none in ",
                   "the training shard; use 0 (no validation) or >= 2");
  const int64_t inputs = static_cast<int64_t>(args.inputs.size());
  LOOM_CHECK_INPUT(args.val_every <= inputs, "--val-every ", args.val_every, " puts no document in the validation ",
                   "shard: only ", inputs, " input files; use 0 (no validation) or at most ", inputs);
  loom::ensureWritableDir(args.out_dir, "--out-dir");
  const std::filesystem::path dir(args.out_dir);
  ShardWriter train((dir / (args.name_train + ".bin")).string());
  std::unique_ptr<ShardWriter> val;
  if (args.val_every > 0) val = std::make_unique<ShardWriter>((dir / (args.name_val + ".bin")).string());
  const loom::data::ByteTokenizer tokenizer;
  for (int64_t i = 0; i < inputs; ++i) {
    const std::string& input = args.inputs[static_cast<size_t>(i)];
    const std::string text = loom::readFile(input, "input text file");
    const bool to_val = args.val_every > 0 && (i + 1) % args.val_every == 0;
    (to_val ? *val : train).addDocument(tokenizer.encode(text), input);
  }
  train.finish();
  report(train);
  if (val != nullptr) {
    val->finish();
    report(*val);
  }
}

void checkShards(const Args& args) {
  for (const std::string& path : args.inputs) {
    const loom::data::TokenShard shard(path, args.vocab_size);
    std::cout << path << ": ok, " << shard.documentCount() << " documents, " << shard.size() << " tokens"
              << (shard.hasIndex() ? "" : " (no index: documents are end-of-document runs)") << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "loom-data: turns text files into token shards (one document per file, byte-level tokens), "
      "or validates shards with --check. Format: docs/data.md.",
      "loom-data"};
  Args args;
  app.add_option("files", args.inputs, "input text files (one document each), or shards with --check")->required();
  app.add_option("--out-dir", args.out_dir, "directory for <name-train>.bin/.idx and <name-val>.bin/.idx");
  app.add_option("--val-every", args.val_every, "every K-th document goes to the validation shard; 0 = none")
      ->capture_default_str();
  app.add_option("--name-train", args.name_train, "file stem of the training shard")->capture_default_str();
  app.add_option("--name-val", args.name_val, "file stem of the validation shard")->capture_default_str();
  app.add_flag("--check", args.check, "validate the given .bin shards (and their .idx) instead of writing");
  app.add_option("--vocab-size", args.vocab_size, "vocabulary size token ids are checked against (--check)")
      ->capture_default_str();
  return loom::runCliMain(app, argc, argv, [&] {
    if (args.check) {
      checkShards(args);
    } else {
      LOOM_CHECK_INPUT(!args.out_dir.empty(), "--out-dir is required to write shards (or pass --check)");
      writeShards(args);
    }
    return 0;
  });
}
