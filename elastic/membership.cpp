#include "elastic/membership.h"

#include "runtime/core/error.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <algorithm>
#include <exception>
#include <iterator>
#include <sstream>
#include <thread>
#include <utility>

namespace loom::elastic {
namespace {

using Clock = std::chrono::steady_clock;

std::string joinIds(const std::vector<int>& ids) {
  std::ostringstream out;
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? ", " : "") << ids[i];
  return out.str();
}

std::vector<int> sortedUnique(std::vector<int> ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

// Sorted members; InputError for an empty list, negative ids or duplicates.
std::vector<int> checkedMembers(std::vector<int> members, const char* what) {
  LOOM_CHECK_INPUT(!members.empty(), "membership: ", what, " with no members");
  std::sort(members.begin(), members.end());
  LOOM_CHECK_INPUT(members.front() >= 0, "membership: ", what, " with a negative member id ", members.front());
  const auto dup = std::adjacent_find(members.begin(), members.end());
  LOOM_CHECK_INPUT(dup == members.end(), "membership: ", what, " lists member ", dup == members.end() ? 0 : *dup,
                   " twice");
  return members;
}

// "<generation>|<id>,<id>,...": the value of the generation key. Never empty,
// so an empty expected value in compareSet means "absent".
std::vector<uint8_t> encode(const Membership& m) {
  std::ostringstream out;
  out << m.generation << '|';
  for (size_t i = 0; i < m.members.size(); ++i) out << (i ? "," : "") << m.members[i];
  const std::string text = out.str();
  return std::vector<uint8_t>(text.begin(), text.end());
}

Membership decode(const std::vector<uint8_t>& bytes, const std::string& key) {
  const std::string text(bytes.begin(), bytes.end());
  Membership m;
  const size_t bar = text.find('|');
  try {
    LOOM_CHECK(bar != std::string::npos, "no '|'");
    m.generation = std::stoll(text.substr(0, bar));
    std::istringstream ids(text.substr(bar + 1));
    std::string id;
    while (std::getline(ids, id, ',')) m.members.push_back(std::stoi(id));
  } catch (const std::exception&) {
    LOOM_CHECK(false, "membership: the store key ", key, " holds '", text,
               "', not a membership (another program writes under this prefix?)");
  }
  return m;
}

}  // namespace

std::string Membership::describe() const {
  return "generation " + std::to_string(generation) + " (ranks " + joinIds(members) + ")";
}

MembershipStore::MembershipStore(c10::intrusive_ptr<c10d::Store> store, std::string prefix)
    : store_(std::move(store)), prefix_(std::move(prefix)) {
  LOOM_CHECK_INPUT(store_, "membership: no store");
}

Membership MembershipStore::initialize(std::vector<int> members) {
  Membership first{0, checkedMembers(std::move(members), "the initial membership")};
  return decode(store_->compareSet(generationKey(), {}, encode(first)), generationKey());
}

Membership MembershipStore::current() {
  LOOM_CHECK_INPUT(store_->check({generationKey()}), "membership: no membership in the store at ", generationKey(),
                   ": call MembershipStore::initialize() on every rank first");
  return decode(store_->get(generationKey()), generationKey());
}

Proposal MembershipStore::proposeNext(int64_t expected_generation, std::vector<int> members) {
  Membership next{expected_generation + 1, checkedMembers(std::move(members), "a proposal")};
  const std::vector<uint8_t> seen = store_->get(generationKey());
  const Membership now = decode(seen, generationKey());
  LOOM_CHECK_INPUT(expected_generation <= now.generation, "membership: proposal for generation ", next.generation,
                   " but the store is only at ", now.describe());
  if (now.generation > expected_generation) return Proposal{now, false};  // stale
  const std::vector<uint8_t> ours = encode(next);
  const std::vector<uint8_t> result = store_->compareSet(generationKey(), seen, ours);
  return Proposal{decode(result, generationKey()), result == ours};
}

Membership MembershipStore::waitForGeneration(int64_t generation, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(2);
  std::string last_seen = "no membership at all";
  while (true) {
    if (store_->check({generationKey()})) {
      const Membership m = decode(store_->get(generationKey()), generationKey());
      if (m.generation >= generation) return m;
      last_seen = m.describe() + "; none of those ranks proposed generation " + std::to_string(generation) +
                  " (they died, hang, or have not detected the failure yet)";
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
  LOOM_THROW(PeerLostError, "membership: waiting for generation ", generation, " at ", generationKey(),
             " timed out after ", timeout.count(), " ms: the store still holds ", last_seen);
}

std::string MembershipStore::generationPrefix(int64_t generation) const {
  return prefix_ + "/gen/" + std::to_string(generation);
}

c10::intrusive_ptr<c10d::Store> MembershipStore::storeFor(int64_t generation) const {
  return c10::make_intrusive<c10d::PrefixStore>(generationPrefix(generation), store_);
}

QuorumDecision decideQuorum(const std::vector<int>& previous_ids, const std::vector<int>& healthy_ids, int min_ranks) {
  LOOM_CHECK_INPUT(min_ranks >= 1, "quorum: the minimum number of ranks must be at least 1, got ", min_ranks);
  const std::vector<int> previous = sortedUnique(previous_ids);
  const std::vector<int> healthy = sortedUnique(healthy_ids);
  QuorumDecision d;
  std::set_difference(previous.begin(), previous.end(), healthy.begin(), healthy.end(), std::back_inserter(d.lost));
  std::set_difference(healthy.begin(), healthy.end(), previous.begin(), previous.end(), std::back_inserter(d.joined));
  const size_t survivors = previous.size() - d.lost.size();
  const std::string lost = d.lost.empty() ? "" : "; lost ranks " + joinIds(d.lost);

  if (healthy.size() < static_cast<size_t>(min_ranks)) {
    d.message = "quorum: only " + std::to_string(healthy.size()) + " healthy ranks (" + joinIds(healthy) +
                "), below the minimum of " + std::to_string(min_ranks) + lost +
                ". Stop, and restart from the last checkpoint once enough ranks are back";
    return d;
  }
  d.fast = d.lost.empty();
  if (!d.fast && 2 * survivors <= previous.size()) {
    d.message = "quorum: only " + std::to_string(survivors) + " of the " + std::to_string(previous.size()) +
                " previous ranks are healthy (" + joinIds(healthy) + lost +
                "), not a strict majority: the others may be alive on the far side of a network partition, so "
                "this side must not continue (split-brain guard). Stop, and restart from the last checkpoint";
    return d;
  }
  d.proceed = true;
  d.members = healthy;
  d.message = d.fast ? "quorum: fast path, all " + std::to_string(previous.size()) + " previous ranks healthy"
                     : "quorum: " + std::to_string(survivors) + " of " + std::to_string(previous.size()) +
                           " previous ranks healthy" + lost;
  if (!d.joined.empty()) d.message += "; joined ranks " + joinIds(d.joined);
  d.message += "; continuing with ranks " + joinIds(d.members);
  return d;
}

}  // namespace loom::elastic
