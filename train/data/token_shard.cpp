#include "train/data/token_shard.h"

#include "runtime/core/error.h"
#include "runtime/core/file_util.h"
#include "runtime/core/unique_fd.h"
#include "train/data/byte_tokenizer.h"
#include "train/data/shard_format.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>

// Tokens are read in place from the mapping; the format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "token shards are mapped as little-endian uint16");

namespace loom::data {

// A read-only mapping of a whole file, unmapped on destruction.
class TokenShard::Mapping {
 public:
  Mapping(const std::string& path, int fd, size_t bytes) : bytes_(bytes) {
    data_ = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
    LOOM_CHECK_INPUT(data_ != MAP_FAILED, path, ": cannot map ", bytes, " bytes: ", describeErrno("mmap", errno));
  }
  ~Mapping() { ::munmap(data_, bytes_); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  const uint8_t* bytes() const { return static_cast<const uint8_t*>(data_); }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

namespace {

void checkVocabulary(const std::string& path, const uint16_t* tokens, int64_t count, int64_t vocab_size) {
  for (int64_t i = 0; i < count; ++i) {
    LOOM_CHECK_INPUT(tokens[i] < vocab_size, path, ": token at position ", i, " is ", tokens[i],
                     ", not below model.vocab_size ", vocab_size,
                     "; the shard was made for a larger vocabulary: raise model.vocab_size or re-tokenize");
  }
}

}  // namespace

TokenShard::TokenShard(std::string path, int64_t vocab_size) : path_(std::move(path)) {
  LOOM_CHECK_INPUT(vocab_size >= kMinVocabSize && vocab_size <= 65536, path_, ": model.vocab_size ", vocab_size,
                   " cannot read a token shard: it must be in [", kMinVocabSize,
                   ", 65536] (256 bytes + end-of-document; uint16 tokens)");
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  LOOM_CHECK_INPUT(fd.get() >= 0, path_, ": cannot open token shard: ", describeErrno("open", errno),
                   "; check the path or create the shard with loom-data");
  struct stat info {};
  LOOM_CHECK_INPUT(::fstat(fd.get(), &info) == 0, path_, ": ", describeErrno("fstat", errno));
  LOOM_CHECK_INPUT(S_ISREG(info.st_mode), path_, ": not a regular file");
  const auto file_size = static_cast<uint64_t>(info.st_size);
  std::array<uint8_t, kHeaderBytes> header{};
  if (file_size >= kHeaderBytes) {
    LOOM_CHECK_INPUT(::pread(fd.get(), header.data(), header.size(), 0) == static_cast<ssize_t>(header.size()), path_,
                     ": cannot read the header: ", describeErrno("pread", errno));
  }
  size_ = parseShardHeader(path_, header.data(), file_size >= kHeaderBytes ? header.size() : 0, file_size);
  mapping_ = std::make_unique<Mapping>(path_, fd.get(), static_cast<size_t>(file_size));
  tokens_ = reinterpret_cast<const uint16_t*>(mapping_->bytes() + kHeaderBytes);
  if (vocab_size < 65536) checkVocabulary(path_, tokens_, size_, vocab_size);

  const std::string index_path = indexPathFor(path_);
  has_index_ = pathExists(index_path);
  if (has_index_) {
    const std::string bytes = readFile(index_path, "document index");
    documents_ = parseDocumentIndex(index_path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), size_);
    checkDocumentEnds(index_path, tokens_, documents_);
  } else {
    documents_ = documentsFromTokens(tokens_, size_);
  }
}

TokenShard::~TokenShard() = default;

}  // namespace loom::data
