// The engine's fast path (integer kernels, thread pool) against the fp32 reference path on
// the real tinyllm-8m, quantized in memory; KV cache types; in-flight quantization.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "core/thread_pool.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/kernels.h"
#include "lowbit/quantize.h"
#include "lowbit/tokenizer.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;

const Model& tinyllm() {
  static const Model m = load_model(shared_path("models/tinyllm-8m"));
  return m;
}

const std::vector<int32_t>& wikitext_tokens() {
  static const auto tokens = [] {
    auto text =
        read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")).substr(0, 200000);
    return Tokenizer::create(tinyllm().vocab)->encode(text);
  }();
  return tokens;
}

double perplexity(const Model& m, EngineOptions o, size_t chunks = 6) {
  o.n_ctx = 512;
  Engine e(m, o);
  PerplexityOptions p;
  p.max_chunks = chunks;
  return evaluate_perplexity(e, wikitext_tokens(), p).ppl;
}

TEST(ThreadPool, RunsEveryTaskOnceAndRethrows) {
  ThreadPool pool(3);
  for (size_t n : {0u, 1u, 2u, 7u, 1000u}) {
    std::vector<std::atomic<int>> hits(n);
    auto fn = [&](size_t i) { hits[i].fetch_add(1); };
    pool.run(n, fn);
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "task " << i << " of " << n;
  }
  auto bad = [](size_t i) {
    if (i == 5) throw std::runtime_error("task 5 failed");
  };
  try {
    pool.run(10, bad);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "task 5 failed");
  }
}

// run_shares covers every item once in claims of at most a quarter of a share and 8 pieces
// (at least one piece), in fewer calls than pieces, and a thread held up in its first claim
// has the rest of its share taken by the others.
TEST(ThreadPool, SharesCoverEveryItemOnceAndAreTakenFromASlowThread) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (size_t n : {0u, 1u, 2u, 7u, 64u, 1000u})
      for (size_t piece : {1u, 5u, 64u}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<size_t> calls{0};
        const size_t share = (n + threads - 1) / threads;
        const size_t max_claim = ThreadPool::kMaxClaimPieces * piece;
        auto fn = [&](size_t b, size_t e) {
          ASSERT_LE(e - b, std::max(piece, std::min(share / 4, max_claim)));
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          for (size_t i = b; i < e; ++i) hits[i].fetch_add(1);
          calls.fetch_add(1);
        };
        pool.run_shares(n, piece, fn);
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[i].load(), 1) << "item " << i << " of " << n << ", pieces of " << piece
                                       << ", " << threads << " threads";
        // one thread, 1000 items: 21 claims of 40, then 40, 30, 22, ... 5, 3 (33 calls; pieces
        // of 5: 200)
        if (threads == 1 && n == 1000 && piece == 5) {
          EXPECT_LE(calls.load(), 40u);
        }
      }
  }
  ThreadPool pool(3);
  // The piece holding item 0 waits until every other item is done (10 s at most). Without
  // stealing, the rest of its share would never be done and the wait would time out.
  constexpr size_t kItems = 300;
  std::atomic<size_t> done{0};
  std::atomic<bool> timed_out{false};
  auto slow_first = [&](size_t b, size_t e) {
    if (b == 0) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (done.load() < kItems - e && !timed_out)
        if (std::chrono::steady_clock::now() > deadline) timed_out = true;
    }
    done.fetch_add(e - b);
  };
  pool.run_shares(kItems, 10, slow_first);
  EXPECT_FALSE(timed_out.load()) << "the first share's other pieces were not taken";
  EXPECT_EQ(done.load(), kItems);
}

// The acceptance bar: quantized perplexity through the fast path within 0.1% of the
// reference path, for the main presets.
// Both batched integer paths: the row kernels (packed_batch 0) and, where the CPU has
// AVX-512 VNNI, the packed panels.
TEST(FastEngine, PerplexityEqualsTheReferenceWithinATenthOfAPercent) {
  // 6 windows left Q3_K_M at +0.109% on an AVX2-only CPU (the 8-bit activations' noise);
  // 12 average it down as the per-type test's 30 do.
  constexpr size_t kWindows = 12;
  for (const char* preset : {"Q4_K_M", "Q8_0", "Q3_K_M"}) {
    SCOPED_TRACE(preset);
    const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset(preset), 2);
    EngineOptions ref;
    const double p_ref = perplexity(q, ref, kWindows);
    for (uint32_t packed_batch : {0u, 8u}) {
      if (packed_batch && !kernels::packed_gemm_is_fast()) continue;
      EngineOptions fast;
      fast.fast = true;
      fast.blas_batch = 0;  // the integer kernels for the whole window, not BLAS
      fast.packed_batch = packed_batch;
      const double p_fast = perplexity(q, fast, kWindows);
      EXPECT_LT(std::fabs(p_fast / p_ref - 1), 1e-3)
          << "reference " << p_ref << ", fast " << p_fast;
      std::printf("%s, packed_batch %u: reference %.4f, fast %.4f (%+.4f%%)\n", preset,
                  packed_batch, p_ref, p_fast, 100 * (p_fast / p_ref - 1));
      EXPECT_NE(p_fast, p_ref) << "the fast path gave the reference's exact value: was it used?";
    }
  }
}

// Every integer type through the packed panels (or the row kernels on CPUs without VNNI),
// the whole model in that type. On 6 windows the 8-bit activations move PPL by up to ~0.15%
// (Q2_K), which 30 windows average down to within 0.1% for every type
// (scripts/fast_vs_reference.sh, docs/SPEED.md); a broken kernel moves it by whole percents.
TEST(FastEngine, EveryTypeIsWithinATenthOfAPercentOfTheReference) {
  for (DType t : test::block_types(true)) {
    SCOPED_TRACE(dtype_name(t));
    QuantizePlanOptions plan;
    if (find_preset(dtype_name(t)) || is_sparse_2of4(t)) {
      plan = plan_for_type_or_preset(dtype_name(t));
    } else {  // no preset of its own (IQ3_XXS): every matrix by a pattern
      plan.preset = "Q8_0", plan.pure = true;
      plan.tensor_types = {{".*", t}};
    }
    const Model q = quantize_model_in_memory(tinyllm(), plan, 2);
    EngineOptions ref, fast;
    fast.fast = true, fast.blas_batch = 0;
    const double p_ref = perplexity(q, ref, 6), p_fast = perplexity(q, fast, 6);
    EXPECT_LT(std::fabs(p_fast / p_ref - 1), 2e-3) << "reference " << p_ref << ", fast " << p_fast;
    std::printf("%-7s reference %.4f, fast %.4f (%+.4f%%)\n", dtype_name(t), p_ref, p_fast,
                100 * (p_fast / p_ref - 1));
    EXPECT_NE(p_fast, p_ref) << "the fast path gave the reference's exact value: was it used?";
  }
}

// The packed panels and the row kernels see the same 8-bit activations and sum the same
// integers; only the order of float sums differs, which the next layer's 8-bit rounding can
// turn into a code step. So the panels' logits are no farther from the row kernels' than
// the row kernels' are from the fp32 reference.
TEST(FastEngine, PackedPanelsGiveTheRowKernelsLogits) {
  if (!kernels::packed_gemm_is_fast()) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset("Q4_K_M"), 2);
  const std::vector<int32_t> prompt(wikitext_tokens().begin(), wikitext_tokens().begin() + 40);
  auto logits = [&](bool fast, uint32_t packed_batch) {
    EngineOptions o;
    o.fast = fast, o.blas_batch = 0, o.packed_batch = packed_batch, o.n_ctx = 64;
    Engine e(q, o);
    std::vector<float> out;
    e.eval(prompt.data(), prompt.size(), out, true);
    return out;
  };
  const auto ref = logits(false, 0), rows = logits(true, 0), packed = logits(true, 8);
  double d_packed = 0, d_ref = 0;  // mean |difference|
  for (size_t i = 0; i < ref.size(); ++i) {
    d_packed += std::fabs(packed[i] - rows[i]) / ref.size();
    d_ref += std::fabs(rows[i] - ref[i]) / ref.size();
  }
  std::printf("mean |logit difference|: panels vs row kernels %.3g, row kernels vs fp32 %.3g\n",
              d_packed, d_ref);
  EXPECT_GT(d_packed, 0.0) << "identical logits: were the batched paths used?";
  EXPECT_LT(d_packed, d_ref);
}

// From blas_batch tokens on, the fast path multiplies dequantized tiles with BLAS as the
// reference does: its logits are then (nearly) the reference's, while below the threshold the
// integer kernels' 8-bit activations leave a visible difference.
TEST(FastEngine, BatchesFromBlasBatchTokensTakeTheBlasPath) {
  const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset("Q4_K_M"), 2);
  const std::vector<int32_t> prompt(wikitext_tokens().begin(), wikitext_tokens().begin() + 40);
  auto logits = [&](bool fast, uint32_t blas_batch) {
    EngineOptions o;
    o.fast = fast, o.blas_batch = blas_batch, o.n_ctx = 64;
    o.packed_batch = 0;  // (the packed panels come first when the CPU has VNNI)
    Engine e(q, o);
    std::vector<float> out;
    e.eval(prompt.data(), prompt.size(), out, true);
    return out;
  };
  const auto ref = logits(false, 0), blas = logits(true, 32),
             ints = logits(true, 41);  // 40 tokens < 41: integer kernels
  double d_blas = 0, d_ints = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    d_blas = std::max(d_blas, static_cast<double>(std::fabs(blas[i] - ref[i])));
    d_ints = std::max(d_ints, static_cast<double>(std::fabs(ints[i] - ref[i])));
  }
  EXPECT_GT(d_ints, 1e-3) << "the integer kernels matched the reference exactly: were they used?";
  EXPECT_LT(d_blas, d_ints / 20) << "BLAS path " << d_blas << ", integer kernels " << d_ints;
}

// Attention from packed_batch tokens on works in chunks of queries over the keys each chunk
// sees, after whatever the cache already holds. With bf16 weights (BLAS in both paths) only
// the attention's sum order differs, so a prompt fed as 24 + 90 tokens (two chunks) through
// the fast path gives the reference's logits for one batch of 114.
TEST(FastEngine, BatchedAttentionAfterACachedPrefixEqualsTheReference) {
  const std::vector<int32_t> prompt(wikitext_tokens().begin(), wikitext_tokens().begin() + 114);
  EngineOptions ref, fast;
  ref.n_ctx = fast.n_ctx = 128;
  fast.fast = true, fast.packed_batch = 8;
  Engine whole(tinyllm(), ref), split(tinyllm(), fast);
  std::vector<float> all, first, second;
  whole.eval(prompt.data(), prompt.size(), all, true);
  split.eval(prompt.data(), 24, first, true);
  split.eval(prompt.data() + 24, 90, second, true);
  const size_t V = tinyllm().config.n_vocab;
  double worst = 0;
  for (size_t t = 0; t < 90; ++t)
    for (size_t i = 0; i < V; ++i)
      worst = std::max(worst, static_cast<double>(
                                  std::fabs(second[t * V + i] - all[(24 + t) * V + i])));
  EXPECT_LT(worst, 1e-3) << "largest logit difference";
}

// Generation (one token per call) takes the same path as a batch below packed_batch and
// blas_batch: the logits of a prompt fed token by token equal those of the prompt fed at once.
TEST(FastEngine, TokenByTokenEqualsOneBatch) {
  const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset("Q4_K_M"), 2);
  EngineOptions o;
  o.fast = true, o.n_ctx = 64;
  o.packed_batch = 0;  // the panels sum in another order than the one-token kernels
  Engine batch(q, o), steps(q, o);
  const std::vector<int32_t> prompt(wikitext_tokens().begin(), wikitext_tokens().begin() + 24);
  std::vector<float> all, one;
  batch.eval(prompt.data(), prompt.size(), all, true);
  const size_t V = q.config.n_vocab;
  for (size_t t = 0; t < prompt.size(); ++t) {
    steps.eval(&prompt[t], 1, one, false);
    for (size_t i = 0; i < V; i += 97)
      ASSERT_NEAR(one[i], all[t * V + i], 1e-3) << "token " << t << " logit " << i;
  }
}

// The work the fast engine spreads over its threads (the panels, activation quantization in
// pieces, SwiGLU in chunks, attention heads) adds nothing that depends on the split: one
// thread and three give the same logits bit for bit, on the panels (80 tokens) and on the
// one-token kernels.
TEST(FastEngine, ThreadCountDoesNotChangeTheLogits) {
  const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset("Q4_K_M"), 2);
  const std::vector<int32_t> prompt(wikitext_tokens().begin(), wikitext_tokens().begin() + 80);
  std::vector<float> logits[2][2];  // [threads 1 / 3][prompt, then one more token]
  for (int i = 0; i < 2; ++i) {
    EngineOptions o;
    o.fast = true, o.n_ctx = 128, o.n_threads = i == 0 ? 1 : 3;
    Engine e(q, o);
    e.eval(prompt.data(), prompt.size(), logits[i][0], true);
    e.eval(&prompt[0], 1, logits[i][1], false);
  }
  ASSERT_EQ(logits[0][0].size(), prompt.size() * q.config.n_vocab);
  EXPECT_EQ(logits[0][0], logits[1][0]);
  EXPECT_EQ(logits[0][1], logits[1][1]);
}

TEST(FastEngine, KvCacheTypesChangePerplexityLittle) {
  const double f32 = perplexity(tinyllm(), {}, 4);
  for (DType t : {DType::F16, DType::Q8_0}) {
    EngineOptions o;
    o.rounding.cache_type_k = o.rounding.cache_type_v = t;
    const double p = perplexity(tinyllm(), o, 4);
    EXPECT_NE(p, f32) << dtype_name(t) << ": the cache type changed nothing";
    EXPECT_LT(std::fabs(p / f32 - 1), t == DType::F16 ? 1e-4 : 3e-3)
        << dtype_name(t) << ": " << p << " vs f32 " << f32;
    std::printf("KV cache %s: %.4f vs f32 %.4f (%+.4f%%)\n", dtype_name(t), p, f32,
                100 * (p / f32 - 1));
  }
  EngineOptions bad;
  bad.rounding.cache_type_k = DType::Q4_K;
  EXPECT_NE(test::expect_error([&] { Engine e(tinyllm(), bad); }).find("KV cache type Q4_K"),
            std::string::npos);
}

TEST(InFlightQuantization, QuantizesMatricesOnlyAndRejectsUnknownNames) {
  const Model q = quantize_model_in_memory(tinyllm(), plan_for_type_or_preset("Q4_K"), 2);
  size_t q4k = 0;
  for (const TensorView& t : q.tensors) {
    if (t.shape.size() == 1) { EXPECT_EQ(t.dtype, tinyllm().tensor(t.name).dtype) << t.name; }
    q4k += t.dtype == DType::Q4_K;
    uint64_t want = 0;
    ASSERT_TRUE(tensor_bytes(t.dtype, t.row_len(), t.n_values(), &want));
    EXPECT_EQ(t.nbytes, want) << t.name;
  }
  EXPECT_GT(q4k, 7u);
  EXPECT_NE(test::expect_error([] { plan_for_type_or_preset("Q9_X"); }).find("Q4_K_M"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit
