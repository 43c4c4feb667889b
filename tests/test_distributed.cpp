// lowbit/distributed.h outside mpirun, and how a distributed quantization spreads its
// tensors. The runs over real ranks, byte for byte against one process, are tests/mpi/run.sh.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "algo/stats_reducer.h"
#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "lowbit/quantize.h"
#include "lowbit/synthetic.h"
#include "lowbit/threads.h"

namespace lowbit {
namespace {

Model small_model() {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = 64, c.n_embd = 64, c.n_layer = 3, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16,
  c.n_ff = 192;
  c.n_ctx = 32;
  return make_synthetic_model(c, Vocab{}, 5, DType::F32, 0.1f);
}

// The estimated cost spread_tensors balances (its documented formula; embeddings untied).
double cost(const TensorView& t, bool gptq) {
  const double rows = double(t.n_rows()), cols = double(t.row_len());
  const bool swept = gptq && t.shape.size() == 2 && t.name != "token_embd.weight";
  return swept ? rows * cols * cols + cols * cols * cols : rows * cols;
}

TEST(Distributed, OutsideMpirunTheJobIsOneProcess) {
  dist::Group& g = dist::world();
  EXPECT_EQ(g.size(), 1);
  EXPECT_EQ(g.rank(), 0);
  EXPECT_FALSE(dist::is_distributed());
  EXPECT_TRUE(dist::is_root());
  char byte = 0;
  try {
    g.send(1, 0, &byte, 1);
    FAIL() << "a send to rank 1 of a one-process job returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no rank 1"), std::string::npos) << e.what();
  }
  dist::abort_job(1);  // nothing to stop: returns
}

TEST(Distributed, DefaultThreadsShareTheCoresAmongLocalRanks) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  ASSERT_EQ(dist::local_ranks(), 1);
  EXPECT_EQ(resolve_threads(0), cores);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
  EXPECT_EQ(dist::local_ranks(), 2);
  EXPECT_EQ(resolve_threads(0), std::max(1, cores / 2));
  EXPECT_EQ(resolve_threads(3), 3);  // an explicit count stays
  unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  EXPECT_EQ(dist::local_ranks(), 1);
}

TEST(Distributed, SpreadTensorsGivesEveryTensorOneRankAndBalancesTheCost) {
  const Model m = small_model();
  for (bool gptq : {false, true})
    for (int n : {1, 2, 3, 5}) {
      SCOPED_TRACE(testing::Message() << "gptq " << gptq << ", ranks " << n);
      const std::vector<int> owner = spread_tensors(m, gptq, n);
      ASSERT_EQ(owner.size(), m.tensors.size());
      EXPECT_EQ(owner, spread_tensors(m, gptq, n));  // every rank computes the same
      std::vector<double> load(n, 0.0);
      double largest = 0;
      for (size_t i = 0; i < owner.size(); ++i) {
        ASSERT_GE(owner[i], 0);
        ASSERT_LT(owner[i], n);
        load[owner[i]] += cost(m.tensors[i], gptq);
        largest = std::max(largest, cost(m.tensors[i], gptq));
      }
      // Longest first to the least loaded: no rank ends more than one tensor above another.
      const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
      EXPECT_LE(*hi - *lo, largest);
      if (n == 1) {
        EXPECT_EQ(*std::max_element(owner.begin(), owner.end()), 0);
      } else {
        EXPECT_GT(*lo, 0);  // more tensors than ranks: nobody idles
      }
    }
}

TEST(Distributed, HessianBandsCoverTheTriangleInEqualShares) {
  for (size_t cols : {1, 7, 64, 2048})
    for (size_t n : {1, 2, 3, 8}) {
      SCOPED_TRACE(testing::Message() << cols << " columns, " << n << " ranks");
      const size_t total = cols * (cols + 1) / 2;
      size_t next = 0, largest = 0, smallest = total;
      for (size_t k = 0; k < n; ++k) {
        const auto [first, last] = StatsReducer::band(cols, k, n);
        EXPECT_EQ(first, next);  // contiguous, in rank order
        ASSERT_LE(first, last);
        size_t elements = 0;
        for (size_t r = first; r < last; ++r) elements += cols - r;
        largest = std::max(largest, elements);
        smallest = std::min(smallest, elements);
        next = last;
      }
      EXPECT_EQ(next, cols);
      // Each boundary is the first row past its ideal split: bands differ by under two rows.
      if (cols >= 64 * n) {
        EXPECT_LE(largest - smallest, 2 * cols);
      }
    }
}

}  // namespace
}  // namespace lowbit
