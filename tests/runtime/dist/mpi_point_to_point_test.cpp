// send/recv of the MPI communicator: a ring over every rank for several dtypes
// and sizes (100003 floats are far above Open MPI's eager limit, so a ring of
// blocking sends would deadlock), matching by tag, and size mismatches.
#include "runtime/core/error.h"
#include "tests/runtime/dist/mpi_test_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace loom::dist::test {
namespace {

using ::testing::HasSubstr;

TEST(MpiPointToPointTest, RingEveryRankSendsRightAndReceivesLeft) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  const int right = (comm->rank() + 1) % n;
  const int left = (comm->rank() + n - 1) % n;
  for (at::ScalarType type : {at::kFloat, at::kBFloat16, at::kLong, at::kByte}) {
    for (int64_t count : {0, 1, 7, 1023, 100003}) {
      SCOPED_TRACE(c10::str(count, " x ", type));
      const at::Tensor outgoing = rankPattern(comm->rank(), count, 0, type);
      at::Tensor incoming = at::full({count}, 99, type);
      const int64_t sent_before = comm->bytesSent();
      const int64_t received_before = comm->bytesReceived();
      auto send = comm->send(outgoing, right, 3);
      auto recv = comm->recv(incoming, left, 3);
      send->wait();
      recv->wait();
      EXPECT_TRUE(at::equal(incoming, rankPattern(left, count, 0, type)));
      const int64_t bytes = count * static_cast<int64_t>(c10::elementSize(type));
      EXPECT_EQ(comm->bytesSent() - sent_before, bytes);
      EXPECT_EQ(comm->bytesReceived() - received_before, bytes);
    }
  }
}

TEST(MpiPointToPointTest, TagsTellApartMessagesBetweenTheSamePair) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  const int right = (comm->rank() + 1) % n;
  const int left = (comm->rank() + n - 1) % n;
  const at::Tensor first = rankPattern(comm->rank(), 1023, 0, at::kFloat);
  const at::Tensor second = rankPattern(comm->rank(), 1023, 3, at::kFloat);
  at::Tensor got_second = at::zeros({1023});
  at::Tensor got_first = at::zeros({1023});
  // Received in the opposite order of sending: only the tags can pair them up.
  auto recv_second = comm->recv(got_second, left, 2);
  auto recv_first = comm->recv(got_first, left, 1);
  auto send_first = comm->send(first, right, 1);
  auto send_second = comm->send(second, right, 2);
  for (auto* work : {&recv_second, &recv_first, &send_first, &send_second}) (*work)->wait();
  EXPECT_TRUE(at::equal(got_first, rankPattern(left, 1023, 0, at::kFloat)));
  EXPECT_TRUE(at::equal(got_second, rankPattern(left, 1023, 3, at::kFloat)));
}

TEST(MpiPointToPointTest, NonContiguousReceiveWritesThroughTheView) {
  auto comm = worldCommunicator();
  const int n = comm->size();
  at::Tensor base = at::zeros({7, 2}, at::kDouble);
  at::Tensor column = base.select(1, 0);
  auto recv = comm->recv(column, (comm->rank() + n - 1) % n, 0);
  comm->send(rankPattern(comm->rank(), 7, 0, at::kDouble), (comm->rank() + 1) % n, 0)->wait();
  recv->wait();
  EXPECT_TRUE(at::equal(column, rankPattern((comm->rank() + n - 1) % n, 7, 0, at::kDouble)));
  EXPECT_TRUE(at::equal(base.select(1, 1), at::zeros({7}, at::kDouble)));
}

TEST(MpiPointToPointTest, SizeMismatchFailsTheReceiveWithBothSizes) {
  auto comm = worldCommunicator();
  if (comm->rank() > 1) return;  // a pair is enough; the other ranks issue nothing
  const int peer = 1 - comm->rank();
  // Rank 0 sends 7 then 5 floats; rank 1 expects 9 (too few arrive) then 3 (too many arrive).
  if (comm->rank() == 0) {
    comm->send(at::ones({7}), peer, 1)->wait();
    comm->send(at::ones({5}), peer, 2)->wait();
    return;
  }
  at::Tensor larger = at::zeros({9});
  try {
    comm->recv(larger, peer, 1)->wait();
    ADD_FAILURE() << "a 7-element message filled a 9-element receive without complaint";
  } catch (const PeerLostError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("got 7 elements, expected 9"));
  }
  at::Tensor smaller = at::zeros({3});
  try {
    comm->recv(smaller, peer, 2)->wait();
    ADD_FAILURE() << "a 5-element message fit a 3-element receive";
  } catch (const PeerLostError& e) {
    EXPECT_THAT(errorMessage(e), HasSubstr("MPI_ERR_TRUNCATE"));
    EXPECT_THAT(errorMessage(e), HasSubstr("recv from rank 0 tag 2"));
  }
}

TEST(MpiPointToPointTest, BadPeersAndTagsAreInputErrors) {
  auto comm = worldCommunicator();
  const at::Tensor t = at::ones({3});
  at::Tensor u = at::ones({3});
  const int other = (comm->rank() + 1) % comm->size();
  EXPECT_THROW(comm->send(t, comm->rank(), 0), InputError);
  EXPECT_THROW(comm->recv(u, comm->size(), 0), InputError);
  EXPECT_THROW(comm->send(t, other, -1), InputError);
  EXPECT_THROW(comm->recv(u, other, -5), InputError);
}

}  // namespace
}  // namespace loom::dist::test
