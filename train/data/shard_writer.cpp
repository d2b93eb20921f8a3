#include "train/data/shard_writer.h"

#include "runtime/core/error.h"
#include "train/data/shard_format.h"

#include <unistd.h>

#include <cerrno>

namespace loom::data {
namespace {

constexpr size_t kFlushBytes = size_t{1} << 20;

}  // namespace

ShardWriter::ShardWriter(std::string shard_path)
    : path_(std::move(shard_path)), bin_(std::make_unique<AtomicFileWriter>(path_)), offsets_{0} {
  const std::string placeholder(kHeaderBytes, '\0');  // the real header is written by finish()
  bin_->write(placeholder.data(), placeholder.size());
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::addDocument(const std::vector<uint16_t>& document, const std::string& source) {
  LOOM_CHECK(bin_ != nullptr, "ShardWriter::addDocument after finish() on ", path_);
  const int64_t total = tokens() + static_cast<int64_t>(document.size()) + 1;
  LOOM_CHECK_INPUT(total <= kMaxShardTokens, path_, ": adding \"", source, "\" (", document.size(),
                   " tokens + end-of-document) makes ", total, " tokens, more than a shard holds (", kMaxShardTokens,
                   ", the header's int32 count); split the inputs over several shards");
  for (uint16_t token : document) {
    buffer_.push_back(static_cast<char>(token & 0xFF));
    buffer_.push_back(static_cast<char>(token >> 8));
  }
  buffer_.push_back(static_cast<char>(kEodToken & 0xFF));
  buffer_.push_back(static_cast<char>(kEodToken >> 8));
  offsets_.push_back(total);
  if (buffer_.size() >= kFlushBytes) {
    bin_->write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
}

void ShardWriter::finish() {
  LOOM_CHECK(bin_ != nullptr, "ShardWriter::finish called twice on ", path_);
  LOOM_CHECK_INPUT(documents() >= 1, path_, ": no documents to write; a shard holds at least one document");
  bin_->write(buffer_.data(), buffer_.size());
  buffer_.clear();
  const std::string header = encodeShardHeader(tokens());
  bin_->writeAt(0, header.data(), header.size());

  const std::string index_path = indexPathFor(path_);
  AtomicFileWriter index(index_path);
  const std::string index_bytes = encodeDocumentIndex(offsets_);
  index.write(index_bytes.data(), index_bytes.size());

  // Old index first, then the shard, then its index: a crash in between leaves
  // a shard without index (valid: documents come from EOD runs), never a
  // shard beside another shard's index.
  LOOM_CHECK_INPUT(::unlink(index_path.c_str()) == 0 || errno == ENOENT, "cannot remove the old index \"", index_path,
                   "\": ", describeErrno("unlink", errno));
  bin_->commit();
  index.commit();
  bin_.reset();
}

}  // namespace loom::data
